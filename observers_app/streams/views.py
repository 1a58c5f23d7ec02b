"""The stream endpoint: ``GET <hub urls>/stream?var=NAME&var=PATTERN[&token=...]``, Server-Sent Events."""

import logging
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import SyncToAsync
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from .. import conf
from ..exceptions import InvalidVariableId, ObserversError, StreamRefused
from . import access, messages, resume
from .fanout import StreamFanout, get_fanout
from .watcher import Watcher

logger = logging.getLogger(__name__)


@require_GET
async def stream_view(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """Send the current value of each watched variable, then each change, until the client leaves.

    400 for bad parameters, 403 (with the reason) for a request that may not watch them. A page of
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
    except InvalidVariableId as exc:
        return _plain(str(exc), 400)
    try:
        fanout = await get_fanout()
    except Exception as exc:  # the broker or the database is unreachable: the client retries later
        logger.exception("event=stream_hub_unavailable")
        return _plain(f"streams are unavailable right now ({type(exc).__name__}); retry later", 503)
    try:
        if token := _token(request):
            access.check_token(token, var_ids)
        else:
            await fanout.run_db(_check_session_user, request, var_ids)
    except StreamRefused as exc:
        return _plain(str(exc), 403)
    last_event_id = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id")
    response = StreamingHttpResponse(
        _events(fanout, var_ids, last_event_id), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies such as nginx must pass each event on at once
    return response


async def _events(
    fanout: StreamFanout, var_ids: list[str], last_event_id: str | None
) -> AsyncIterator[bytes]:
    """The stream's body: it starts watching only once the response is being sent, and stops the
    moment it ends (Django cancels it when the client disconnects). A reconnect with the id of the
    last event it got is sent what it missed, from the history, then what comes live (read after
    subscribing: no gap; each variable's by seq: no duplicate), or a reset and a snapshot."""
    _release_request_thread()
    watcher = Watcher(var_ids, buffer_size=conf.stream_buffer())
    try:
        await fanout.join(watcher)
        opening = await fanout.run_db(resume.open_stream, var_ids, last_event_id)
        watcher.positions = opening.positions
        if opening.resumed and opening.positions is not None:
            fanout.start_positions(watcher, resume.last_positions(opening.positions, opening.events))
            first = watcher.take_resumed(opening.events, opening.positions)
        else:
            fanout.start_positions(watcher, opening.events)
            first = watcher.take_snapshot(opening.events)
        reset = messages.reset(opening.reset) if opening.reset else b""
        yield b": watching\n\n" + reset + watcher.wire(first)
        while watcher.closed_reason is None:
            await watcher.wake.wait()
            if chunk := watcher.drain():
                yield chunk
        yield messages.closing(watcher.closed_reason)
    except ObserversError as exc:  # e.g. TooManyObservers while subscribing
        yield messages.closing(str(exc))
    finally:
        fanout.leave(watcher)


def _release_request_thread() -> None:
    """Django runs each ASGI request's sync middleware on a thread of its own, kept until the
    request ends: for a stream, hours. Let it go, so that an open stream costs no thread. It holds no
    database connection: the stream's database work (the session's user included) runs on the fan-out's
    threads."""
    context = SyncToAsync.thread_sensitive_context.get(None)
    executor = SyncToAsync.context_to_thread_executor.pop(context, None) if context else None
    if executor is not None:
        executor.shutdown(wait=False)


def _check_session_user(request: HttpRequest, var_ids: list[str]) -> None:
    access.check_user(request.user, var_ids)


def _token(request: HttpRequest) -> str | None:
    """``?token=``, else ``Authorization: Bearer``; a request with neither uses the session."""
    scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
    return request.GET.get("token") or (bearer.strip() if scheme.lower() == "bearer" else "") or None


def _plain(text: str, status: int, **kwargs: Any) -> HttpResponse:
    return HttpResponse(text + "\n", status=status, content_type="text/plain; charset=utf-8", **kwargs)
