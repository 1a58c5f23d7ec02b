"""Observing model fields: saves, bulk writes and deletes notify old and new values after commit."""

from decimal import Decimal

import pytest
from django.core import checks
from django.db import models, transaction

from observers_app import manager
from observers_app.exceptions import PayloadTooLarge
from observers_app.querysets import glob_matches
from observers_app.sources import model_fields
from observers_app.sources.model_fields import model_variable_id, observe_model
from tests.conftest import wait_for
from tests.testapp.callbacks import record
from tests.testapp.models import Order, Received

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]


def watch(order_pk: int, *fields: str) -> list[str]:
    var_ids = [model_variable_id(Order, order_pk, field) for field in fields or ("status",)]
    for var_id in var_ids:
        manager.add_observer(var_id, record)
    return var_ids


def changes(var_id: str, count: int) -> list[tuple]:
    """The (old, new, event) of ``var_id``'s notifications in seq order, once ``count`` arrived;
    a sentinel sent afterwards proves nothing else was on its way."""
    wait_for(lambda: Received.objects.filter(var_id=var_id).count() >= count)
    calls = sorted(Received.objects.filter(var_id=var_id), key=lambda c: c.metadata["seq"])
    return [(c.old_value, c.new_value, c.metadata["event"]) for c in calls]


def settle(order: Order, var_id: str) -> None:
    """Send one last known change and wait for it: every earlier notification was sent before it."""
    Order.objects.filter(pk=order.pk).update(status="sentinel")
    wait_for(lambda: Received.objects.filter(var_id=var_id, new_value="sentinel").exists())


def test_variable_id_scheme():
    assert model_variable_id(Order, 42, "status") == "testapp.order:42:status"


def test_save_notifies_old_and_new_and_an_unchanged_save_sends_nothing():
    order = Order.objects.create()
    status, total = watch(order.pk, "status", "total")
    order.status = "paid"
    order.total = Decimal("12.50")
    order.save()
    order.note = "not observed"
    order.save()
    order.save(update_fields=["status"])

    assert changes(status, 1) == [("new", "paid", "updated")]
    assert changes(total, 1) == [("0.00", "12.50", "updated")]
    settle(order, status)
    assert changes(status, 2) == [("new", "paid", "updated"), ("paid", "sentinel", "updated")]
    [call] = Received.objects.filter(var_id=total)
    assert call.metadata["model"] == "testapp.order" and call.metadata["pk"] == order.pk


def test_create_and_delete_are_notified():
    manager.add_observer("testapp.order:*:status", record, glob=True)
    order = Order.objects.create(status="draft")
    status = model_variable_id(Order, order.pk, "status")
    pk = order.pk
    Order.objects.filter(pk=pk).delete()
    assert changes(status, 2) == [(None, "draft", "created"), ("draft", None, "deleted")]
    assert {c.metadata["pk"] for c in Received.objects.filter(var_id=status)} == {pk}


def test_queryset_update_notifies_each_row_with_its_old_value():
    orders = [Order.objects.create(status=s) for s in ("new", "new", "paid")]
    var_ids = [watch(o.pk)[0] for o in orders]
    assert Order.objects.filter(status="new").update(status="shipped") == 2

    assert changes(var_ids[0], 1) == [("new", "shipped", "updated")]
    assert changes(var_ids[1], 1) == [("new", "shipped", "updated")]
    settle(orders[2], var_ids[2])
    assert changes(var_ids[2], 1) == [("paid", "sentinel", "updated")]


def test_update_with_an_expression_notifies_the_computed_value():
    order = Order.objects.create(total=Decimal("10.00"))
    [total] = watch(order.pk, "total")
    Order.objects.filter(pk=order.pk).update(total=models.F("total") * 2)
    assert changes(total, 1) == [("10.00", "20.00", "updated")]


def test_bulk_update_and_bulk_create_notify():
    created = Order.objects.bulk_create([Order(status="a"), Order(status="b")])
    assert all(o.pk for o in created)
    var_ids = [watch(o.pk)[0] for o in created]
    for order in created:
        order.status = order.status.upper()
    Order.objects.bulk_update(created, ["status"])

    assert changes(var_ids[0], 1) == [("a", "A", "updated")]
    assert changes(var_ids[1], 1) == [("b", "B", "updated")]


def test_bulk_create_notifies_creation():
    manager.add_observer("testapp.order:*:status", record, glob=True)
    created = Order.objects.bulk_create([Order(status="x"), Order(status="y")])
    for order in created:
        var_id = model_variable_id(Order, order.pk, "status")
        assert changes(var_id, 1) == [(None, order.status, "created")]


def test_a_deferred_field_still_gets_its_old_value():
    order = Order.objects.create(status="new")
    [status] = watch(order.pk)
    loaded = Order.objects.only("note").get(pk=order.pk)
    loaded.status = "paid"
    loaded.save()
    assert changes(status, 1) == [("new", "paid", "updated")]


def test_rollback_and_savepoint_rollback_send_nothing_for_what_was_undone():
    order = Order.objects.create(status="new")
    [status] = watch(order.pk)
    with pytest.raises(RuntimeError), transaction.atomic():
        Order.objects.filter(pk=order.pk).update(status="rolled-back")
        raise RuntimeError
    with transaction.atomic():
        order.status = "outer"
        order.save()
        with pytest.raises(RuntimeError), transaction.atomic():
            order.status = "inner"
            order.save()
            raise RuntimeError
        order.refresh_from_db()

    settle(order, status)
    assert changes(status, 2) == [("new", "outer", "updated"), ("outer", "sentinel", "updated")]


def test_an_observed_model_without_the_observed_manager_is_flagged():
    class Plain(models.Model):
        status = models.CharField(max_length=10)

        class Meta:
            app_label = "testapp"

        def __str__(self) -> str:
            return self.status

    observe_model(Plain, fields=["status"])
    try:
        warnings = [m for m in checks.run_checks() if m.id == "observers.W001"]
        assert [w.obj for w in warnings] == [Plain]
    finally:
        model_fields._observed.pop(Plain)


def test_a_pk_holding_the_separator_is_escaped_so_a_glob_on_one_row_never_matches_another():
    assert model_variable_id(Order, "4:x", "status") == "testapp.order:4%3Ax:status"
    assert model_variable_id(Order, "4%3Ax", "status") == "testapp.order:4%253Ax:status"
    assert not glob_matches("testapp.order:4:*", model_variable_id(Order, "4:x", "status"))
    assert glob_matches("testapp.order:4:*", model_variable_id(Order, 4, "status"))


def test_a_change_the_hub_refuses_is_logged_counted_and_skipped_and_the_save_goes_on(settings):
    order = Order.objects.create()
    var = watch(order.pk)[0]
    before = manager.get_stats()["model_changes_refused"]
    settings.OBSERVERS_MAX_PAYLOAD_BYTES = 100  # the notification of any change is over it

    with transaction.atomic():  # as under ATOMIC_REQUESTS: the host's write must survive
        order.status = "refused"
        order.save()
    order.total = Decimal("1.50")
    order.save(update_fields=["total"])
    Order.objects.filter(pk=order.pk).update(status="refused-too")

    assert Order.objects.get(pk=order.pk).status == "refused-too"
    wait_for(lambda: manager.get_stats()["model_changes_refused"] == before + 3)
    settings.OBSERVERS_MAX_PAYLOAD_BYTES = 256 * 1024
    settle(order, var)
    assert not Received.objects.filter(var_id=var).exclude(new_value="sentinel").exists()


def test_the_size_check_stops_encoding_a_value_once_over_the_limit(monkeypatch):
    encoded: list[object] = []
    default = model_fields._ENCODER.default

    def counting_default(value: object) -> object:
        encoded.append(value)
        return default(value)

    monkeypatch.setattr(model_fields._ENCODER, "default", counting_default)

    with pytest.raises(PayloadTooLarge):
        model_fields._json([Decimal(n) for n in range(100_000)], limit=1_000)
    assert 0 < len(encoded) < 1_000  # stopped long before the 100,000th item
    with pytest.raises(PayloadTooLarge):
        model_fields._json("x" * 100_000_000, limit=1_000)  # a string: by its length, not encoded
