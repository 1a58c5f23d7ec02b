"""A large fan-out stores its notification once: its deliver pages carry a reference, not a copy."""

import itertools
import json
import time
import uuid
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from observers_app import conf, manager
from observers_app.models import Observer, Payload
from observers_app.publishing import broker
from observers_app.registry import name_of
from observers_app.worker import delivery, dispatch, pacing
from tests.conftest import wait_for
from tests.factories import make_observers, unique_var
from tests.testapp.callbacks import record
from tests.testapp.models import Received

pytestmark = pytest.mark.django_db(transaction=True)

BIG = "x" * 20_000


def notification(var_id: str) -> dict[str, Any]:
    return {
        "var_id": var_id,
        "old_value": None,
        "new_value": BIG,
        "metadata": None,
        "notification_id": str(uuid.uuid4()),
        "seq": None,
        "notified_at": time.time(),
    }


def pages_sent(monkeypatch) -> list[str]:
    """The deliver pages' messages a fan-out here publishes (kept, not sent); no callback runs."""
    sent: list[str] = []

    def publish(messages: list[tuple[str, str]], **kw: Any) -> broker.Published:
        sent.extend(args for _, args in messages)
        return broker.Published(len(messages))  # nothing awaited: confirm() returns

    monkeypatch.setattr(broker, "publish", publish)
    monkeypatch.setattr(pacing, "_seconds_per_call", {})  # no callback measured: pages by the batch size
    monkeypatch.setattr(
        "observers_app.worker.calls.call_observers", lambda *a, **kw: dispatch.delivery.calls.BatchOutcome()
    )
    return sent


def test_deliver_pages_carry_a_reference_of_bounded_size_not_the_value(monkeypatch):
    var = unique_var("wide")
    make_observers(var, 1000)
    sent = pages_sent(monkeypatch)

    sent_notification = notification(var)
    list(dispatch.fan_out([sent_notification]))

    assert 2 <= len(sent) <= 4  # 1,000 observers: the first page here, about three deliver pages
    assert all(len(message) < 250 for message in sent), [len(message) for message in sent]
    reference = json.loads(sent[0])[0]
    assert reference["notification_id"] == sent_notification["notification_id"]
    stored = Payload.objects.get(id=reference["payload"])
    assert json.loads(stored.notification)["new_value"] == BIG and stored.pages == len(sent)


@pytest.mark.usefixtures("worker")
def test_every_observer_of_a_large_fan_out_gets_the_value_and_the_payload_goes_after_the_last_page():
    var = unique_var("wide")
    refs = make_observers(var, 1000)

    manager.notify_observers(var, None, BIG)

    wait_for(lambda: Received.objects.filter(var_id=var).count() >= 1000, timeout=60)
    assert set(
        Received.objects.filter(var_id=var, new_value=BIG).values_list("observer_ref", flat=True)
    ) == set(refs)
    wait_for(lambda: not Payload.objects.exists())


def test_a_small_notification_travels_in_its_pages_and_nothing_is_stored(monkeypatch):
    var = unique_var("wide")
    make_observers(var, 1000)
    sent = pages_sent(monkeypatch)
    small = {**notification(var), "new_value": "small"}

    list(dispatch.fan_out([small]))

    assert 2 <= len(sent) <= 4
    carried = [json.loads(message)[0] for message in sent]
    assert {(page["notification_id"], page["new_value"]) for page in carried} == {
        (small["notification_id"], "small")
    }
    assert not Payload.objects.exists()
    assert all(message.startswith('[{"notification_id":') for message in sent)  # shown first in Flower


def test_the_pages_after_the_first_cover_every_further_id_once(monkeypatch):
    """The further pages' bounds are estimated from the first page's ids, not read: consecutive,
    from the first page's last id to the highest id there is, so every further observer is in one."""
    var = unique_var("wide")
    refs = sorted(make_observers(var, 1000))
    sent = pages_sent(monkeypatch)

    list(dispatch.fan_out([{**notification(var), "new_value": "small"}]))

    bounds = [(after, upto) for _, after, upto, _ in (json.loads(message) for message in sent)]
    assert bounds[0][0] == str(refs[conf.batch_size() - 1])  # after the first page, read here
    assert all(upto == following for (_, upto), (following, _) in itertools.pairwise(bounds))
    assert bounds[-1][1] == str(uuid.UUID(int=dispatch.LAST_ID))
    further = refs[conf.batch_size() :]
    assert sum(1 for ref in further for after, upto in bounds if after < str(ref) <= upto) == len(further)


def test_an_estimate_of_the_further_pages_from_the_spread_of_the_first():
    half = uuid.UUID(int=dispatch.LAST_ID // 2)  # the first 100 observers filled half of the ids

    bounds, expected = dispatch.further_pages(half, read=100, size=25)

    assert expected == 100 and len(bounds) == 4
    assert bounds[-1] == uuid.UUID(int=dispatch.LAST_ID)
    widths = {upper.int - lower.int for lower, upper in zip([half, *bounds], bounds, strict=False)}
    assert max(widths) - min(widths) <= 1  # cut evenly
    assert len(dispatch.further_pages(half, read=100, size=30)[0]) == 3  # the nearest count: 33 each
    halved, _ = dispatch.further_pages(half, read=100, size=25, halve_last=True)
    assert len(halved) == 5 and halved[:3] == bounds[:3] and halved[-1] == bounds[-1]
    assert abs((halved[3].int - bounds[2].int) - (bounds[3].int - halved[3].int)) <= 1  # two halves
    assert dispatch.further_pages(uuid.UUID(int=dispatch.LAST_ID - 1), read=100, size=25)[0] == [
        uuid.UUID(int=dispatch.LAST_ID)
    ]  # one page at least: a full first page may not be the last


def test_a_page_holding_more_than_expected_is_delivered_whole_in_bounded_chunks():
    """A page's bounds are an estimate: one holding more than CHUNK_BATCHES batch sizes is read in
    chunks, each observer called once."""
    var = unique_var("wide")
    refs = make_observers(var, delivery.CHUNK_BATCHES * conf.batch_size() + 100)

    with CaptureQueriesContext(connection) as queries:
        delivery.deliver(notification(var), after=None, upto=uuid.UUID(int=dispatch.LAST_ID), globs=[])

    called = list(Received.objects.filter(var_id=var).values_list("observer_ref", flat=True))
    assert sorted(called) == sorted(refs)
    reads = [q["sql"] for q in queries if "observers_app_observer" in q["sql"] and "LIMIT" in q["sql"]]
    assert len(reads) == 2  # two chunks, never the whole page at once


def test_a_fan_out_of_mostly_coalescing_observers_sends_pages_for_its_ordered_ones_only(monkeypatch):
    """The further pages deliver the ordered observers (the coalescing ones go through their mailbox):
    their number is estimated from the ordered ones of the first page, not from all of them."""
    var = unique_var("wide")
    Observer.objects.bulk_create(
        [Observer(var_id=var, callback=name_of(record), coalesce=True) for _ in range(3 * conf.batch_size())]
    )
    make_observers(var, 5)
    sent = pages_sent(monkeypatch)

    list(dispatch.fan_out([{**notification(var), "new_value": "small"}]))

    assert len(sent) == 1  # not two pages for observers that are not theirs to deliver


def test_a_coalescing_observer_past_the_first_page_has_the_notification_offered_to_it(monkeypatch):
    """Whether a variable has coalescing observers comes with the first page's own read, for the whole
    variable: one whose id sorts after every other has the notification offered to its mailbox; a
    variable with none has nothing offered."""
    var, plain, globbed = unique_var("wide"), unique_var("wide"), unique_var("wide")
    for name in (var, plain, globbed):
        make_observers(name, 2 * conf.batch_size())
    Observer.objects.create(
        id=uuid.UUID(int=dispatch.LAST_ID), var_id=var, callback=name_of(record), coalesce=True
    )
    manager.add_observer(f"{globbed}*", record, glob=True, coalesce=True)  # the globs' own read
    pages_sent(monkeypatch)
    offered: list[str] = []
    monkeypatch.setattr(dispatch.coalescing_module, "offer", lambda n: offered.append(n["var_id"]))

    list(dispatch.fan_out([notification(plain), notification(var), notification(globbed)]))

    assert offered == [var, globbed]


def test_pages_of_callbacks_measured_cheap_hold_more_observers_and_are_fewer(monkeypatch):
    """Each page costs its task and its read besides its callbacks: once this process has measured
    a callback as cheap, a fan-out to it sends fewer pages, each holding about PAGE_SECONDS of them."""
    var = unique_var("wide")
    make_observers(var, 6 * conf.batch_size())
    sent = pages_sent(monkeypatch)
    list(dispatch.fan_out([notification(var)]))
    unmeasured = len(sent)  # by the batch size: about five
    per_page = 2 * conf.batch_size()  # a cost that makes pages of twice the batch size
    pacing.record({name_of(record)}, pacing.PAGE_SECONDS / per_page * 100, 100)

    sent.clear()
    list(dispatch.fan_out([notification(var)]))

    assert 4 <= unmeasured <= 6
    # About 1,250 further observers in two or three pages of 500, the last one cut in halves.
    assert 3 <= len(sent) <= 4 < unmeasured + 1, (len(sent), unmeasured)
    widths = [uuid.UUID(json.loads(m)[2]).int - uuid.UUID(json.loads(m)[1]).int for m in sent[-3:]]
    assert abs(widths[1] - widths[2]) <= 1 and abs(widths[0] - 2 * widths[1]) <= 2  # halves of a page
    reached = list(Observer.objects.filter(var_id=var).order_by("id").values_list("id", flat=True))
    assert uuid.UUID(json.loads(sent[-1])[2]) >= reached[-1]  # the last page still ends at the last id
