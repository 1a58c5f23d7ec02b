"""The async API: every ``a``-prefixed twin from plain asyncio code and from async views under uvicorn,
against a real worker, RabbitMQ and PostgreSQL: the same answers and errors as its sync function, the
callbacks arrive, and the event loop keeps turning while a twin waits on the database."""

import asyncio
import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.exceptions import SynchronousOnlyOperation
from django.db import connection, connections, transaction

from observers_app import manager
from observers_app.exceptions import InvalidName, OwnerClosed, ReplayRefused
from observers_app.models import Owner, VariableState
from tests.asgi_server import running_asgi_server
from tests.conftest import wait_for
from tests.factories import unique_var
from tests.loop_watch import watched
from tests.testapp.callbacks import record
from tests.testapp.models import Order, Received

T = TypeVar("T")

pytestmark = [pytest.mark.django_db(transaction=True)]

# How long a row stays locked while a twin waits for it: the loop must keep turning all that time.
HOLD_S = 1.0
# The most a lock is ever held, so that a twin that blocked the loop fails the test instead of hanging it.
MAX_HOLD_S = 10.0
postgresql_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks: PostgreSQL")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run``, then close the connection the twins opened on Django's sync thread (its
    thread outlives the loop; an open session would keep the test database from being dropped)."""

    async def main() -> T:
        try:
            return await coroutine
        finally:
            await sync_to_async(connections.close_all)()

    return asyncio.run(main())


def received(var_id: str) -> list[Received]:
    return list(Received.objects.filter(var_id=var_id).order_by("id"))


@pytest.mark.usefixtures("worker")
def test_an_observer_added_with_aadd_observer_gets_what_anotify_observers_sends():
    var = unique_var("async")

    async def scenario() -> tuple[uuid.UUID, list[str | None]]:
        ref = await manager.aadd_observer(var, record)
        sent = [
            await manager.anotify_observers(var, 1, 2, {"source": "asyncio"}),
            await manager.anotify_observers(var, 2, 3, ordered=True),
            await manager.anotify_observers(var, 3, 4, durable=True),
            await manager.anotify_observers(var, 4, 4),  # unchanged: nothing sent
        ]
        return ref, sent

    ref, sent = run(scenario())
    assert sent[-1] is None
    calls = wait_for(lambda: len(received(var)) == 3 and received(var))
    assert {call.metadata["notification_id"] for call in calls} == set(sent[:3])
    assert {call.observer_ref for call in calls} == {ref}
    assert sorted(call.new_value for call in calls) == [2, 3, 4]
    assert next(call for call in calls if call.new_value == 2).metadata["source"] == "asyncio"


def test_the_twins_answer_as_their_sync_functions():
    var, other = unique_var("async"), unique_var("async")

    async def scenario() -> dict[str, Any]:
        ref = await manager.aadd_observer(var, record)
        refs = await manager.aadd_observers([var, other], record)
        hook = await manager.aadd_webhook(var, "http://127.0.0.1:9/hook")
        return {
            "ref": ref,
            "refs": refs,
            "hook": hook,
            "count": await manager.aobserver_count(var),
            "total": await manager.atotal_observers(),
            "inspect": await manager.ainspect_variable(var),
            "stats": await manager.aget_stats(),
            "history": await manager.ahistory(var),
            "removed": await manager.aremove_observer(var, ref),
            "removed_again": await manager.aremove_observer(var, ref),
            "removal": await manager.aremoval_of(ref),
            "reenabled": await manager.areenable_observer(refs[0]),
            "test_webhook": await manager.asend_test_webhook(refs[0]),
            "replayed": await manager.areplay_dead_letters([]),
            "reaped": await manager.asweep_dead_observers(),
            "swept": await manager.asweep(),
            "flushed": await manager.aflush(),
        }

    got = run(scenario())
    assert got["count"] == 3 and len(got["refs"]) == 2
    assert got["hook"].secret.startswith("whsec_")
    assert got["total"] == 4 and manager.total_observers() == 3
    assert [observer["ref"] for observer in got["inspect"]["observers"]] == [
        got["ref"],
        got["refs"][0],
        got["hook"],
    ]
    without_ages = {**got["inspect"], "observers": [{**o, "age_ms": 0} for o in got["inspect"]["observers"]]}
    now = manager.inspect_variable(var)
    assert without_ages["observers"][1:] == [{**o, "age_ms": 0} for o in now["observers"]]
    assert got["stats"].keys() == manager.get_stats().keys()
    assert got["stats"]["active_observers"] == 4
    assert got["history"] == manager.history(var)
    assert (got["removed"], got["removed_again"]) == (True, False)
    assert got["removal"] == manager.removal_of(got["ref"]) and got["removal"]["reason"] == "removed"
    assert got["reenabled"] is manager.reenable_observer(got["refs"][0]) is False
    assert got["test_webhook"] is manager.send_test_webhook(got["refs"][0]) is False
    assert got["replayed"] == 0
    assert got["reaped"].keys() == manager.sweep_dead_observers().keys()
    assert got["swept"].keys() == manager.sweep().keys()
    assert got["flushed"] is True


BAD_CALLS = [
    pytest.param("add_observer", ("", record), id="add_observer"),
    pytest.param("add_observers", (["ok:1", "bad\n"], record), id="add_observers"),
    pytest.param("remove_observer", ("var:x", "not-a-ref"), id="remove_observer"),
    pytest.param("observer_count", ("",), id="observer_count"),
    pytest.param("inspect_variable", ("bad\x00",), id="inspect_variable"),
    pytest.param("removal_of", ("not-a-ref",), id="removal_of"),
    pytest.param("reenable_observer", (42,), id="reenable_observer"),
    pytest.param("notify_observers", ("", 1, 2), id="notify_observers"),
    pytest.param("notify_observers", ("var:x", 1, object()), id="notify_observers-value"),
    pytest.param("notify_observers", ("var:x", 1, 2, {"seq": 1}), id="notify_observers-metadata"),
    pytest.param("set_variable", ("", "name", 1), id="set_variable"),
    pytest.param("get_variable", ("session", ""), id="get_variable"),
    pytest.param("delete_variable", ("session", "x" * 101), id="delete_variable"),
    pytest.param("add_webhook", ("var:x", "ftp://example.com/hook"), id="add_webhook"),
    pytest.param("open_owner", ("",), id="open_owner"),
    pytest.param("history", ("var:x", -1), id="history"),
]


@pytest.mark.parametrize(("name", "args"), BAD_CALLS)
def test_a_twin_raises_what_its_sync_function_raises(name: str, args: tuple[Any, ...]):
    with pytest.raises(Exception) as sync_raised:  # whatever it is, the twin's must be the same
        getattr(manager, name)(*args)

    async def call_twin() -> Any:
        return await getattr(manager, f"a{name}")(*args)

    with pytest.raises(sync_raised.type) as async_raised:
        run(call_twin())
    assert str(async_raised.value) == str(sync_raised.value)


@pytest.mark.usefixtures("worker")
def test_areplay_answers_and_refuses_as_replay():
    var = unique_var("async-replay")
    ref = manager.add_observer(var, record)
    manager.notify_observers(var, 0, 1)
    wait_for(lambda: Received.objects.filter(observer_ref=str(ref)).exists())

    async def scenario() -> tuple[manager.Replayed, str]:
        replayed = await manager.areplay(ref, since=1)
        try:
            await manager.areplay(ref, since=5)
        except ReplayRefused as exc:
            return replayed, str(exc)
        return replayed, ""

    replayed, refused = run(scenario())
    assert replayed == manager.Replayed(ref, notifications=1, variables=1, complete=True)
    with pytest.raises(ReplayRefused) as sync_refused:
        manager.replay(ref, since=5)
    assert refused == str(sync_refused.value)
    wait_for(lambda: Received.objects.filter(observer_ref=str(ref)).count() == 2)


def test_aopen_owner_as_async_with_removes_its_observers_on_exit():
    var = unique_var("lease")

    async def scenario() -> tuple[uuid.UUID, uuid.UUID, int]:
        async with manager.aopen_owner("ws:async", ttl_s=30) as lease:
            ref = await manager.aadd_observer(var, record, owner=lease)
            await lease.aheartbeat()
            inside = await manager.aobserver_count(var)
        return lease.id, ref, inside

    owner_id, ref, inside = run(scenario())
    assert inside == 1
    assert manager.observer_count(var) == 0
    assert (manager.removal_of(ref) or {}).get("reason") == "owner_closed"
    assert Owner.objects.get(id=owner_id).closed_at is not None


def test_an_awaited_aopen_owner_gives_the_handle_and_its_async_methods():
    var = unique_var("lease")

    async def scenario() -> tuple[manager.OwnerHandle, int]:
        lease = await manager.aopen_owner("ws:awaited", ttl_s=30)
        async with lease:
            await manager.aadd_observer(var, record, owner=lease)
            inside = await manager.aobserver_count(var)
        with pytest.raises(OwnerClosed):
            await manager.aadd_observer(var, record, owner=lease)
        await lease.aclose()  # closing twice is a no-op, as close() is
        return lease, inside

    lease, inside = run(scenario())
    assert (lease.kind, lease.closed, inside) == (Owner.Kind.LEASE, True, 1)
    assert manager.observer_count(var) == 0
    with pytest.raises(OwnerClosed):
        lease.heartbeat()


def test_aopen_owner_refuses_a_bad_name_when_awaited_or_entered():
    async def scenario() -> None:
        with pytest.raises(InvalidName):
            await manager.aopen_owner("")
        with pytest.raises(InvalidName):
            async with manager.aopen_owner("bad\n"):
                pass  # pragma: no cover - never entered

    run(scenario())
    assert not Owner.objects.exists()


def test_aprocess_owner_is_the_process_owner():
    async def scenario() -> manager.OwnerHandle:
        owner = await manager.aprocess_owner()
        assert owner is await manager.aprocess_owner()
        return owner

    owner = run(scenario())
    try:
        assert owner is manager.process_owner()
        assert Owner.objects.get(id=owner.id).kind == Owner.Kind.PROCESS
    finally:
        run(owner.aclose())  # its lock's connection closes too: none outlives the test
    assert Owner.objects.get(id=owner.id).closed_at is not None


@pytest.mark.usefixtures("worker")
def test_the_session_store_twins_round_trip_and_notify():
    var = manager.session_variable_id("s-async", "cart")

    async def scenario() -> list[Any]:
        await manager.aadd_observer(var, record)
        return [
            await manager.aget_variable("s-async", "cart", default="none"),
            await manager.aset_variable("s-async", "cart", {"items": 1}),
            await manager.aset_variable("s-async", "cart", {"items": 2}),
            await manager.aget_variable("s-async", "cart"),
            await manager.adelete_variable("s-async", "cart"),
            await manager.adelete_variable("s-async", "cart"),
            await manager.aget_variable("s-async", "cart", default="gone"),
        ]

    assert run(scenario()) == ["none", 1, 2, {"items": 2}, True, False, "gone"]
    assert manager.get_variable("s-async", "cart", default="gone") == "gone"
    calls = wait_for(lambda: len(received(var)) == 3 and received(var))
    by_version = sorted((call.metadata["version"], call.metadata["seq"], call.new_value) for call in calls)
    assert by_version == [(1, 1, {"items": 1}), (2, 2, {"items": 2}), (3, 3, None)]


@pytest.mark.usefixtures("worker")
def test_djangos_async_orm_notifies_the_fields_of_an_observed_model():
    """Django's own twins (``aupdate``, ``asave``, ``adelete``) run the sync methods, whose
    notifications the hub sends, on the sync thread."""
    order = Order.objects.create()
    var = manager.model_variable_id(Order, order.pk, "status")

    async def scenario() -> None:
        await manager.aadd_observer(var, record)
        await Order.objects.filter(pk=order.pk).aupdate(status="paid")
        loaded = await Order.objects.aget(pk=order.pk)
        loaded.status = "shipped"
        await loaded.asave()
        await loaded.adelete()

    run(scenario())
    wait_for(lambda: len(received(var)) == 3)
    calls = sorted(received(var), key=lambda call: call.metadata["seq"])
    assert [(c.old_value, c.new_value, c.metadata["event"]) for c in calls] == [
        ("new", "paid", "updated"),
        ("paid", "shipped", "updated"),
        ("shipped", None, "deleted"),
    ]


def test_a_sync_function_called_on_a_running_event_loop_raises_djangos_error():
    var = unique_var("sync")

    async def scenario() -> None:
        with pytest.raises(SynchronousOnlyOperation):
            manager.add_observer(var, record)
        with pytest.raises(SynchronousOnlyOperation):
            manager.get_variable("s", "name")
        await manager.aadd_observer(var, record)  # the twin, on the same loop, works

    run(scenario())
    assert manager.observer_count(var) == 1


@pytest.mark.usefixtures("worker")
def test_anotify_observers_inside_a_sync_callers_transaction_waits_for_its_commit():
    """Sync code in ``atomic()`` calling async code (``async_to_sync``): the notification goes with the
    caller's commit, never with its rollback, as the sync function's would."""
    var = unique_var("atomic")
    manager.add_observer(var, record)  # its presence cached: only the transaction can hold it back
    notify = async_to_sync(manager.anotify_observers)
    with pytest.raises(RuntimeError), transaction.atomic():
        notify(var, 1, 2)
        raise RuntimeError("roll back")
    with transaction.atomic():
        sent = notify(var, 2, 3)
    wait_for(lambda: received(var))
    assert [(call.new_value, call.metadata["notification_id"]) for call in received(var)] == [(3, sent)]


class RowLock:
    """Another session holding a row lock: ``waited_for`` is set once a session waits for it,
    ``release`` ends it."""

    def __init__(self) -> None:
        self.locked, self.waited_for, self.release = threading.Event(), threading.Event(), threading.Event()


@contextmanager
def row_locked(var_id: str) -> Iterator[RowLock]:
    """Hold ``var_id``'s VariableState row (``SELECT ... FOR UPDATE``) in a thread with its own
    connection until ``release`` is set or the block ends, at most MAX_HOLD_S."""
    lock = RowLock()

    def hold() -> None:
        deadline = time.monotonic() + MAX_HOLD_S
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                VariableState.objects.select_for_update().get(var_id=var_id)
                lock.locked.set()
                while not lock.release.wait(0.01) and time.monotonic() < deadline:
                    cursor.execute(
                        "SELECT count(*) FROM pg_locks WHERE NOT granted "
                        "AND pg_backend_pid() = ANY(pg_blocking_pids(pid))"
                    )
                    if cursor.fetchone()[0]:
                        lock.waited_for.set()
        finally:
            connections.close_all()

    thread = threading.Thread(target=hold, name="row-lock")
    thread.start()
    try:
        assert lock.locked.wait(MAX_HOLD_S), "the row was not locked"
        yield lock
    finally:
        lock.release.set()
        thread.join()


@postgresql_only
@pytest.mark.usefixtures("worker")
def test_the_event_loop_keeps_turning_while_a_twin_waits_on_a_row_lock():
    """``ordered=True`` takes the variable's ``seq`` on its state row: while another transaction holds
    it, the twin waits on Django's sync thread and the loop's other tasks run (a twin that blocked the
    loop would stall it for the whole hold, and finish before the lock is released). A notify whose
    answer the presence cache holds does not queue behind it."""
    var, other = unique_var("locked"), unique_var("free")
    manager.add_observers([var, other], record)

    async def scenario(lock: RowLock) -> tuple[list[str | None], list[bool], float]:
        async def while_locked() -> tuple[list[str | None], list[bool]]:
            notifying = asyncio.create_task(manager.anotify_observers(var, 1, 2, ordered=True))
            assert await asyncio.to_thread(lock.waited_for.wait, MAX_HOLD_S), "nobody waited for the lock"
            meanwhile = await manager.anotify_observers(other, 1, 2)
            done_after_meanwhile = notifying.done()
            await asyncio.sleep(HOLD_S)  # the loop has nothing else to do meanwhile: the watcher turns
            done_after_hold = notifying.done()
            lock.release.set()
            return [await notifying, meanwhile], [done_after_meanwhile, done_after_hold]

        (sent, done), _, gaps = await watched(while_locked)
        return sent, done, max(gaps)

    with row_locked(var) as lock:
        sent, (done_after_meanwhile, done_after_hold), longest_gap = run(scenario(lock))
    assert not done_after_meanwhile, "the notify of a cached variable waited behind the sync thread"
    assert not done_after_hold, "the twin did not wait for the lock"
    assert longest_gap < HOLD_S / 2, f"the loop stalled {longest_gap:.3f} s while the twin waited"
    calls = wait_for(lambda: len(received(var) + received(other)) == 2 and received(var) + received(other))
    assert [call.metadata["notification_id"] for call in calls] == sent
    assert calls[0].metadata["seq"] == 1


@pytest.mark.usefixtures("worker")
def test_a_thousand_anotify_observers_beside_a_watcher_of_the_loop(record_property: Any):
    """The issue's measurement: 1,000 calls, to observed and unobserved variables, beside a coroutine
    that only yields, against that coroutine alone for as long. The figures are recorded, never
    asserted (docs/benchmarks.md, "The async API", has them and the command that reproduces them);
    the test checks that every notification to an observed variable arrives."""
    observed = [unique_var("many") for _ in range(10)]
    unobserved = [unique_var("none") for _ in range(10)]
    manager.add_observers(observed, record)
    names = [name for pair in zip(observed, unobserved, strict=True) for name in pair]

    async def notify_all() -> list[str | None]:
        return [await manager.anotify_observers(names[i % 20], i, i + 1) for i in range(1000)]

    async def scenario() -> tuple[list[str | None], float, float, float]:
        sent, wall, gaps = await watched(notify_all)
        _, _, plain_gaps = await watched(lambda: asyncio.sleep(wall))
        return sent, wall, max(gaps), max(plain_gaps)

    sent, wall, longest, plain = run(scenario())
    figures = {"wall": wall, "longest_stall": longest, "plain_loop_longest_stall": plain}
    for name, seconds in figures.items():
        record_property(f"{name}_ms", round(seconds * 1000, 2))
    print("1,000 anotify_observers:", ", ".join(f"{name} {s * 1000:.2f} ms" for name, s in figures.items()))
    assert all(sent)
    to_observed = {notification_id for i, notification_id in enumerate(sent) if i % 2 == 0}
    wait_for(lambda: Received.objects.filter(var_id__in=observed).count() >= 500, timeout=60)
    arrived = Received.objects.filter(var_id__in=observed).values_list("metadata__notification_id", flat=True)
    assert set(arrived) == to_observed


def post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        return json.loads(response.read())


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=MAX_HOLD_S / 2) as response:
        return json.loads(response.read())


def assert_logged_no_error(log: Path) -> None:
    text = log.read_text()
    assert "SynchronousOnlyOperation" not in text, text
    assert "Traceback" not in text, text


@pytest.mark.usefixtures("worker")
def test_an_async_view_under_uvicorn_adds_and_notifies_with_the_twins(tmp_path: Path):
    var = unique_var("view")
    log = tmp_path / "uvicorn.log"
    # DEBUG: Django logs every error a request meets (with DEBUG off they go to ADMINS only).
    with running_asgi_server(log_to=log, DEBUG="true") as (base, _):
        added = post(f"{base}/tests/async/observe", {"var_id": var})
        fast = post(f"{base}/tests/async/notify", {"var_id": var, "values": [1, 2, 3]})
        ordered = post(f"{base}/tests/async/notify", {"var_id": var, "values": [4], "ordered": True})
        calls = wait_for(lambda: len(received(var)) == 4 and received(var))
    assert added["observer_count"] == 1
    sent = [*fast["notification_ids"], *ordered["notification_ids"]]
    assert {call.metadata["notification_id"] for call in calls} == set(sent)
    assert {str(call.observer_ref) for call in calls} == {added["ref"]}
    assert {call.metadata["via"] for call in calls} == {"async view"}
    assert sorted(call.metadata["seq"] for call in calls) == [1, 2, 3, 4]
    assert_logged_no_error(log)


@postgresql_only
@pytest.mark.usefixtures("worker")
def test_uvicorn_serves_other_requests_while_an_async_view_waits_on_a_row_lock(tmp_path: Path):
    var = unique_var("view")
    log = tmp_path / "uvicorn.log"
    with running_asgi_server(log_to=log, DEBUG="true") as (base, _), ThreadPoolExecutor(1) as pool:
        added = post(f"{base}/tests/async/observe", {"var_id": var})
        with row_locked(var) as lock:
            body = {"var_id": var, "values": [1], "ordered": True}
            notifying = pool.submit(post, f"{base}/tests/async/notify", body)
            assert lock.waited_for.wait(MAX_HOLD_S), "the view never waited for the lock"
            assert get(f"{base}/tests/async/ping") == {"pong": True}  # the loop answers meanwhile
            assert not notifying.done()
        [notification_id] = notifying.result(timeout=30)["notification_ids"]
        [call] = wait_for(lambda: received(var))
    assert (str(call.observer_ref), call.metadata["notification_id"]) == (added["ref"], notification_id)
    assert_logged_no_error(log)
