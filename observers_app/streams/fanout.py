"""The web process's fan-out to its streams: its observers, its queue consumer, its watchers.

One observer per watched name or pattern, counted per stream and owned by the process owner.
"""

import asyncio
import collections
import functools
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import close_old_connections

from .. import conf, signals
from ..globs import glob_matches
from ..observers.adds import add_observer, add_observers
from ..observers.removals import remove_observer
from ..owners.process import process_owner
from ..telemetry import counters, dashboard
from . import messages, reauthorization
from .consumer import STOP_TIMEOUT_S, QueueConsumer, start_consumer
from .forwarding import FORWARD_CALLBACK
from .gc_policy import GcPolicy
from .messages import StreamEvent
from .ordering import SeqOrder
from .watcher import OWNER_SWEPT, SLOW_CLIENT, TOO_BUSY_TO_OPEN, WRITE_TIMED_OUT, Watcher

T = TypeVar("T")
Ready = asyncio.Future[uuid.UUID | None]  # a stream's observer, once added
logger = logging.getLogger(__name__)

# Seconds between writes of the streams' counters (one write per process, not one per stream).
COUNTERS_FLUSH_S = 2.0
CONSUMER_READY_TIMEOUT_S = 30.0
# Seconds between two readings of the dashboard's figures, while a stream of the process watches them.
DASHBOARD_INTERVAL_S = 1.0
# Notifications the process remembers (name or pattern, id), to drop a second copy of one: the
# copy comes within the same dispatch, seconds at most, and this covers several seconds of what the
# broker delivers to one process (docs/benchmarks.md), at a fraction of a KB each.
RECENT_IDS = 16_384
# Seconds between two steps of the process's garbage collection policy (see gc_policy.py).
COLLECTOR_TICK_S = 1.0


class _Subscription:
    """The process's observer on one name or pattern, and the streams watching it."""

    def __init__(
        self, key: str, ready: "asyncio.Future[uuid.UUID | None]", loop: asyncio.AbstractEventLoop
    ) -> None:
        self.key = key
        self.feed: asyncio.Task[None] | None = None  # the dashboard's readings
        self.ready = ready
        self.watchers: set[Watcher] = set()
        self.order = SeqOrder(self.fan_out, loop)

    def fan_out(self, event: StreamEvent) -> None:
        for watcher in list(self.watchers):
            watcher.offer(event)
            if watcher.closed_reason is not None:
                watcher.leave()


class StreamFanout:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        # Adds and removals in order on one thread: a name's removal never overtakes its add.
        self.registrar = ThreadPoolExecutor(max_workers=1, thread_name_prefix="observers-streams-registrar")
        self.readers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="observers-streams-db")
        self.subscriptions: dict[str, _Subscription] = {}
        self.watchers: set[Watcher] = set()
        self.pending_counts: collections.Counter[str] = collections.Counter()
        # Names waiting for their observer, added by the registrar in batches (appended on the loop).
        self.pending_adds: collections.deque[tuple[str, asyncio.Future[uuid.UUID | None]]] = (
            collections.deque()
        )
        self.adds_scheduled = False
        self.owner: Any = None
        self.consumer: QueueConsumer | None = None
        self.gc_policy = _process_gc_policy() if conf.stream_gc_freeze() else None
        self.recent: dict[tuple[str, str], None] = {}  # oldest first
        self.retired = False
        self.rechecking = False

    async def start(self) -> None:
        """Take the process's owner and start its queue's consumer; on failure, leave nothing
        running (no thread, no consumer of the queue), for the next stream to start again."""
        try:
            self.owner = await self.run_db(process_owner, executor=self.registrar)
            # On the fan-out's own thread, which a failed start shuts down: a failure leaves no thread.
            self.consumer = await self.loop.run_in_executor(
                self.registrar, start_consumer, self.owner.id, self._from_consumer
            )
            ready = self.consumer.wait_ready
            if not await self.loop.run_in_executor(self.registrar, ready, CONSUMER_READY_TIMEOUT_S):
                raise RuntimeError("the streams' queue consumer could not reach the broker")
        except BaseException:
            await self._stop_after_failed_start()
            raise
        signals.process_owner_lost.connect(self._on_owner_lost, weak=False, dispatch_uid=id(self))
        self.loop.call_later(COUNTERS_FLUSH_S, self._flush_counts)
        self.loop.call_later(conf.stream_heartbeat(), self._heartbeat)
        self.loop.call_later(conf.stream_reauthorize_interval(), self._reauthorize)
        if self.gc_policy is not None:
            self.loop.call_later(COLLECTOR_TICK_S, self._collect)

    async def _stop_after_failed_start(self) -> None:
        self.retired = True
        if self.consumer is not None:
            self.consumer.stop()
            await self.loop.run_in_executor(self.registrar, self.consumer.join, STOP_TIMEOUT_S)
        self.registrar.shutdown(wait=False)
        self.readers.shutdown(wait=False)

    async def run_db(
        self, func: Callable[..., T], *args: Any, executor: ThreadPoolExecutor | None = None
    ) -> T:
        """Run database work on the fan-out's own threads (their connections persist): never on a
        request's thread, whose connection would stay open as long as its stream."""
        return await self.loop.run_in_executor(executor or self.readers, _with_fresh_connection, func, *args)

    async def join(self, watcher: Watcher) -> None:
        """Start delivering to ``watcher``; returns once the observer of each of its names exists, so
        that every change committed from then on reaches it."""
        self.watchers.add(watcher)
        self.pending_counts["streams_opened"] += 1
        watcher.leave = functools.partial(self.leave, watcher)
        if self.gc_policy is not None:
            self.gc_policy.opened()
        joined = []
        for key in watcher.keys:
            subscription = self.subscriptions.get(key) or self._subscribe(key)
            subscription.watchers.add(watcher)
            joined.append(subscription)
        for subscription in joined:
            await asyncio.shield(subscription.ready)

    def leave(self, watcher: Watcher) -> None:
        """Stop delivering to ``watcher`` at once; a name's last stream leaving removes its observer."""
        if watcher.left:
            return
        watcher.left = True
        watcher.leave = _nothing  # no cycle left for the garbage collector to find
        self.watchers.discard(watcher)
        if self.gc_policy is not None:
            self.gc_policy.closed()
        self.pending_counts["stream_events_coalesced"] += watcher.coalesced
        self.pending_counts["streams_closed_slow"] += int(
            watcher.closed_reason in (SLOW_CLIENT, TOO_BUSY_TO_OPEN, WRITE_TIMED_OUT)
        )
        for key in watcher.keys:
            subscription = self.subscriptions.get(key)
            if subscription is None:
                continue
            subscription.watchers.discard(watcher)
            if not subscription.watchers:
                # Kept a while: the name's changes are still dispatched, so kept in its history, and a
                # client that reconnects within the window resumes from there (streams/resume.py).
                window = 0.0 if key == dashboard.VARIABLE else conf.stream_resume_window()
                self.loop.call_later(window, self._release, key, subscription)

    def _release(self, key: str, subscription: _Subscription) -> None:
        """Remove the name's observer, unless a stream watches it again."""
        if self.subscriptions.get(key) is not subscription or subscription.watchers:
            return
        del self.subscriptions[key]
        subscription.order.close()
        subscription.ready.add_done_callback(functools.partial(self._unsubscribe, key))

    def _subscribe(self, key: str) -> _Subscription:
        if key == dashboard.VARIABLE:
            return self._subscribe_dashboard()
        ready: asyncio.Future[uuid.UUID | None] = self.loop.create_future()
        self.pending_adds.append((key, ready))
        if not self.adds_scheduled:
            # Once the names of this turn of the loop are all waiting (a stream joins all of its own).
            self.adds_scheduled = True
            self.loop.call_soon(self._schedule_adds)
        subscription = self.subscriptions[key] = _Subscription(key, ready, self.loop)
        ready.add_done_callback(lambda done: self._forget_failed(subscription, done))
        return subscription

    def _subscribe_dashboard(self) -> _Subscription:
        """The dashboard's figures: no observer, the process reads them while a stream watches."""
        ready: asyncio.Future[uuid.UUID | None] = self.loop.create_future()
        ready.set_result(None)
        subscription = self.subscriptions[dashboard.VARIABLE] = _Subscription(
            dashboard.VARIABLE, ready, self.loop
        )
        subscription.feed = asyncio.ensure_future(self._feed_dashboard(subscription))
        return subscription

    async def _feed_dashboard(self, subscription: _Subscription) -> None:
        last: dict[str, Any] | None = None
        while self.subscriptions.get(subscription.key) is subscription:
            try:
                reading = await self.run_db(dashboard.reading)
            except Exception:
                logger.warning("event=dashboard_reading_failed", exc_info=True)
            else:
                if reading != last:
                    subscription.fan_out(messages.dashboard(reading, last))
                    last = reading
            await asyncio.sleep(DASHBOARD_INTERVAL_S)

    def _forget_failed(self, subscription: _Subscription, ready: "asyncio.Future[uuid.UUID | None]") -> None:
        failed = not ready.cancelled() and ready.exception() is not None
        if failed and self.subscriptions.get(subscription.key) is subscription:
            del self.subscriptions[subscription.key]

    def _schedule_adds(self) -> None:
        self.adds_scheduled = False
        self.registrar.submit(self._add_pending)

    def _add_pending(self) -> None:
        """On the registrar: add the observers of every name waiting, names and patterns in one bulk
        add each (a name the caps refuse fails alone), and settle their streams' futures. A job may
        find none left: the one before took them."""
        batch = []
        while self.pending_adds:
            batch.append(self.pending_adds.popleft())
        if not batch:
            return
        try:
            close_old_connections()
            for glob in (False, True):
                group = [(key, ready) for key, ready in batch if ("*" in key) is glob]
                if group:
                    self._add_group(group, glob=glob)
        except BaseException as error:
            for _, ready in batch:
                self.loop.call_soon_threadsafe(_settle, ready, None, error)
            raise

    def _add_group(self, group: list[tuple[str, "asyncio.Future[uuid.UUID | None]"]], *, glob: bool) -> None:
        try:
            refs = add_observers([key for key, _ in group], FORWARD_CALLBACK, owner=self.owner, glob=glob)
        except Exception:
            if len(group) == 1:
                raise
            for key, ready in group:
                try:
                    ref = add_observer(key, FORWARD_CALLBACK, owner=self.owner, glob=glob)
                except Exception as error:
                    self.loop.call_soon_threadsafe(_settle, ready, None, error)
                else:
                    self.loop.call_soon_threadsafe(_settle, ready, ref, None)
            return
        for (_, ready), ref in zip(group, refs, strict=True):
            self.loop.call_soon_threadsafe(_settle, ready, ref, None)

    def _unsubscribe(self, key: str, ready: "asyncio.Future[uuid.UUID | None]") -> None:
        if ready.cancelled() or ready.exception() is not None or ready.result() is None:
            return
        self.registrar.submit(_with_fresh_connection, remove_observer, key, ready.result())

    def _from_consumer(self, message: dict[str, Any]) -> None:
        """On the consumer's thread: hand the notification to the event loop."""
        self.loop.call_soon_threadsafe(self.deliver, message)

    def deliver(self, message: dict[str, Any]) -> None:
        """Fan one notification out to the streams watching the name or pattern it came for."""
        subscription = self.subscriptions.get(message["pattern"])
        if subscription is None:
            return  # its last stream left; the observer is on its way out
        event = messages.from_notification(message)
        if not self._seen(subscription.key, event.notification_id):
            subscription.order.push(event)

    def _seen(self, key: str, notification_id: str | None) -> bool:
        """Whether this notification came already for ``key``: a name's observer re-added while its
        previous one was being removed forwards each notification twice for a moment."""
        if notification_id is None:
            return False
        if (key, notification_id) in self.recent:
            return True
        self.recent[key, notification_id] = None
        if len(self.recent) > RECENT_IDS:
            del self.recent[next(iter(self.recent))]
        return False

    def start_positions(self, watcher: Watcher, snapshot: list[StreamEvent]) -> None:
        """Where each snapshot variable's seqs continue, for the subscriptions that carry it."""
        for event in snapshot:
            if event.seq is None:
                continue
            for key in watcher.keys:
                subscription = self.subscriptions.get(key)
                if subscription is not None and glob_matches(key, event.var_id):
                    subscription.order.start_from(event.var_id, event.seq)

    def _heartbeat(self) -> None:
        """One timer for every stream of the process (not one per stream, re-armed per event)."""
        for watcher in self.watchers:
            watcher.heartbeat()
        if not self.retired:
            self.loop.call_later(conf.stream_heartbeat(), self._heartbeat)

    def _reauthorize(self) -> None:
        """Check every open stream's authorization again, in one job on the database threads (one
        at a time); each stream no longer authorized closes with the reason."""
        if self.retired:
            return
        watchers = [w for w in self.watchers if w.grant is not None and w.closed_reason is None]
        if watchers and not self.rechecking:
            self.rechecking = True
            checking = asyncio.ensure_future(
                self.run_db(reauthorization.recheck, [(w.grant, list(w.keys)) for w in watchers])
            )
            checking.add_done_callback(functools.partial(self._rechecked, watchers))
        self.loop.call_later(conf.stream_reauthorize_interval(), self._reauthorize)

    def _rechecked(self, watchers: list[Watcher], checking: "asyncio.Future[list[str | None]]") -> None:
        self.rechecking = False
        if checking.cancelled() or checking.exception() is not None:
            logger.warning("event=stream_reauthorize_failed", exc_info=checking.exception())
            return  # the next round checks them again
        for watcher, reason in zip(watchers, checking.result(), strict=True):
            if reason is not None and watcher.closed_reason is None:
                self.close_unauthorized(watcher, reason)

    def close_unauthorized(self, watcher: Watcher, reason: str) -> None:
        """End a stream whose authorization ended, with the reason as its last event."""
        if watcher.closed_reason is None:
            self.pending_counts["streams_closed_unauthorized"] += 1
            watcher.close(reason)

    def _collect(self) -> None:
        assert self.gc_policy is not None
        if not self.retired:
            self.gc_policy.tick(len(self.watchers))
            self.loop.call_later(COLLECTOR_TICK_S, self._collect)

    def _flush_counts(self) -> None:
        counts, self.pending_counts = self.pending_counts, collections.Counter()
        if counts:
            self.registrar.submit(_with_fresh_connection, counters.increment, dict(counts))
        if not self.retired or self.watchers or self.pending_counts:
            self.loop.call_later(COUNTERS_FLUSH_S, self._flush_counts)

    def _on_owner_lost(self, owner: uuid.UUID, **kwargs: Any) -> None:
        """On the lock keeper's thread: the process's owner was swept, and the observers with it."""
        if self.owner is not None and owner == self.owner.id:
            self.loop.call_soon_threadsafe(self._retire)

    def _retire(self) -> None:
        """Close every stream with the reason (their clients reconnect, and get a snapshot first) and
        stop: the next stream starts a new fan-out, with the process's new owner."""
        global _fanout, _starting
        if self.retired:
            return
        self.retired = True
        if _fanout is self:
            _fanout = _starting = None
        signals.process_owner_lost.disconnect(dispatch_uid=id(self))
        logger.error("event=streams_closed_owner_swept streams=%d", len(self.watchers))
        for watcher in list(self.watchers):
            watcher.close(OWNER_SWEPT)
        if self.consumer is not None:
            self.consumer.stop()


def _nothing() -> None:
    pass


def _settle(
    ready: "asyncio.Future[uuid.UUID | None]", ref: uuid.UUID | None, error: BaseException | None
) -> None:
    """On the event loop: a stream's observer added, or its add failed."""
    if ready.done():
        return
    if error is not None:
        ready.set_exception(error)
    else:
        ready.set_result(ref)


_gc_policy: GcPolicy | None = None


def _process_gc_policy() -> GcPolicy:
    """The process's one policy, whichever fan-out serves its streams."""
    global _gc_policy
    if _gc_policy is None:
        _gc_policy = GcPolicy()
    return _gc_policy


def _with_fresh_connection(func: Callable[..., T], *args: Any) -> T:
    close_old_connections()  # drops a connection the database closed or that outlived CONN_MAX_AGE
    return func(*args)


_fanout: StreamFanout | None = None
_starting: "asyncio.Future[StreamFanout] | None" = None


async def get_fanout() -> StreamFanout:
    """The process's fan-out, started by the first stream. A stream whose client leaves meanwhile
    stops waiting, not the start: the next stream waits for the same one (a second fan-out would
    wait forever for the queue the first one's consumer holds)."""
    global _starting
    if _fanout is not None:
        return _fanout
    if _starting is None:
        _starting = asyncio.ensure_future(_start())
        _starting.add_done_callback(_started)
    return await asyncio.shield(_starting)


def _started(starting: "asyncio.Future[StreamFanout]") -> None:
    global _fanout, _starting
    if starting.cancelled() or starting.exception() is not None:
        _starting = None  # the next stream tries again
    else:
        _fanout = starting.result()


async def _start() -> StreamFanout:
    fanout = StreamFanout(asyncio.get_running_loop())
    await fanout.start()
    return fanout
