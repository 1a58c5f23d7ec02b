"""The stream endpoint: ``GET <hub urls>/stream?var=NAME&var=PATTERN[&token=...]``, Server-Sent Events."""

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import SyncToAsync
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from .. import conf
from ..db import database_now
from ..exceptions import InvalidVariableId, ObserversError, StreamLimitReached, StreamRefused
from . import access, limits, messages, resume, revocation
from .fanout import StreamFanout, get_fanout
from .watcher import WRITE_TIMED_OUT, Watcher

logger = logging.getLogger(__name__)


@require_GET
async def stream_view(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """Send the current value of each watched variable, then each change, until the client leaves.

    400 for bad parameters, 403 (with the reason) for a request that may not watch them, 429 (with
    the reason) past one of the client's limits (streams per user, token or address; names). A page of
    an origin in OBSERVERS_STREAM_ALLOWED_ORIGINS may read a token-authenticated answer (CORS,
    without credentials).
    """
    response = await _answer(request)
    patch_vary_headers(response, ["Origin"])
    origin = access.cors_origin(request.headers.get("Origin"))
    if origin and _token(request):  # a session-authenticated answer stays with its own origin
        response["Access-Control-Allow-Origin"] = origin
    return response


async def _answer(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    if not isinstance(request, ASGIRequest):
        return _plain("streams need an ASGI server (project.asgi:application, e.g. under uvicorn)", 501)
    try:
        var_ids = access.parse_var_ids(request.GET.getlist("var"))
    except StreamLimitReached as exc:
        return _plain(str(exc), 429)
    except InvalidVariableId as exc:
        return _plain(str(exc), 400)
    try:
        fanout = await get_fanout()
    except Exception as exc:  # the broker or the database is unreachable: the client retries later
        logger.exception("event=stream_hub_unavailable")
        return _plain(f"streams are unavailable right now ({type(exc).__name__}); retry later", 503)
    try:
        if token := _token(request):
            grant = await fanout.run_db(revocation.refuse_revoked, access.check_token(token, var_ids))
        else:
            grant = await fanout.run_db(access.session_grant, request, var_ids)
    except StreamRefused as exc:
        return _plain(str(exc), 403)
    try:
        admission = limits.admit(
            user=grant.user_id, token=grant.token_id, address=request.META.get("REMOTE_ADDR")
        )
    except StreamLimitReached as exc:
        fanout.pending_counts["streams_refused_limit"] += 1
        return _plain(str(exc), 429)
    last_event_id = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id")
    watcher = Watcher(var_ids, buffer_size=conf.stream_buffer(), grant=grant)
    events = _events(fanout, watcher, admission, last_event_id)
    weakref.finalize(events, admission.release)  # also when the response never starts sending
    response = StreamingHttpResponse(events, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies such as nginx must pass each event on at once
    return response


async def _events(
    fanout: StreamFanout, watcher: Watcher, admission: limits.Admission, last_event_id: str | None
) -> AsyncIterator[bytes]:
    """The stream's body: it starts watching only once the response is being sent, and stops the
    moment it ends (Django cancels it when the client disconnects). A reconnect with the id of the
    last event it got is sent what it missed, from the history, then what comes live (read after
    subscribing: no gap; each variable's by seq: no duplicate), or a reset and a snapshot.

    Each chunk must be taken by the client within OBSERVERS_STREAM_WRITE_TIMEOUT: the response's
    sending waits on the client's reads, out of this generator's reach, so a timer cancels it."""
    _release_request_thread()
    loop = asyncio.get_running_loop()
    sending = asyncio.current_task()
    expiry = None
    if watcher.grant.expires_at is not None:  # a token: its stream ends when the token does
        delay = max(0.0, watcher.grant.expires_at - time.time())
        expiry = loop.call_later(delay, fanout.close_unauthorized, watcher, access.TOKEN_EXPIRED)

    def end() -> None:
        if expiry is not None:
            expiry.cancel()
        fanout.leave(watcher)
        admission.release()

    def write_timed_out() -> None:
        """The client took nothing for the write timeout: drop what waits for it and cancel the
        sending (the server closes the connection). The stream is ended here, not left to the
        generator's finalization, which a frozen garbage collector may never run."""
        logger.warning("event=stream_write_timeout var_ids=%s", list(watcher.keys)[:5])
        watcher.close(WRITE_TIMED_OUT)
        end()
        if sending is not None:
            sending.cancel()

    try:
        started = await fanout.run_db(database_now)
        await fanout.join(watcher)
        opening = await fanout.run_db(resume.open_stream, list(watcher.keys), last_event_id, started)
        watcher.positions = opening.positions
        if opening.resumed and opening.positions is not None:
            fanout.start_positions(watcher, resume.last_positions(opening.positions, opening.events))
            first = watcher.take_resumed(opening.events, opening.positions)
        else:
            fanout.start_positions(watcher, opening.events)
            first = watcher.take_snapshot(opening.events)
        reset = messages.reset(opening.reset) if opening.reset else b""
        chunk = b": watching\n\n" + reset + watcher.wire(first)
        while watcher.closed_reason is None:
            if chunk:
                timer = loop.call_later(conf.stream_write_timeout(), write_timed_out)
                yield chunk
                timer.cancel()
            await watcher.wake.wait()
            chunk = watcher.drain()
        yield chunk + messages.closing(watcher.closed_reason)
    except ObserversError as exc:  # e.g. TooManyObservers while subscribing
        yield messages.closing(str(exc))
    finally:
        end()


def _release_request_thread() -> None:
    """Django runs each ASGI request's sync middleware on a thread of its own, kept until the
    request ends: for a stream, hours. Let it go, so that an open stream costs no thread. It holds no
    database connection: the stream's database work (the session's user included) runs on the fan-out's
    threads."""
    context = SyncToAsync.thread_sensitive_context.get(None)
    executor = SyncToAsync.context_to_thread_executor.pop(context, None) if context else None
    if executor is not None:
        executor.shutdown(wait=False)


def _token(request: HttpRequest) -> str | None:
    """``?token=``, else ``Authorization: Bearer``; a request with neither uses the session."""
    scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
    return request.GET.get("token") or (bearer.strip() if scheme.lower() == "bearer" else "") or None


def _plain(text: str, status: int, **kwargs: Any) -> HttpResponse:
    return HttpResponse(text + "\n", status=status, content_type="text/plain; charset=utf-8", **kwargs)
