"""The webhook HTTP client: pooled httpx connections, opened only to addresses the SSRF guard vetted.

The guard sits in the connection path itself: each new connection resolves its host once, vets every
address and connects to a vetted one, so no second lookup can swap the address (DNS rebinding), while
the URL keeps its host name for the Host header, TLS SNI and certificate verification. Redirects are
followed by hand, each hop checked again; the whole exchange runs under one deadline.
"""

import os
import signal
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from urllib.parse import urljoin

import httpcore
import httpx

from .. import conf
from ..exceptions import InvalidWebhook
from . import guard

REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Of a reply body, only this much is read (kept as the attempt's error excerpt); the rest is not read.
BODY_READ_MAX = 4096
USER_AGENT = "observers-webhooks/1"


class DeliveryTimeout(Exception):
    """The whole exchange with an endpoint (redirects included) outlasted OBSERVERS_WEBHOOK_TIMEOUT."""


class TooManyRedirects(InvalidWebhook):
    """An endpoint redirected more than OBSERVERS_WEBHOOK_MAX_REDIRECTS times."""


@dataclass(frozen=True)
class Reply:
    status: int
    url: str
    retry_after: str | None
    body: bytes


class _GuardedBackend(httpcore.SyncBackend):
    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        address = guard.vetted_address(host, port)
        return super().connect_tcp(address, port, timeout, local_address, socket_options)


class _GuardedTransport(httpx.HTTPTransport):
    """httpx's transport over an httpcore pool whose every connection goes through the guard."""

    def __init__(self, limits: httpx.Limits) -> None:
        super().__init__(trust_env=False, limits=limits)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(),
        )


_client: httpx.Client | None = None


def _drop_client() -> None:
    # A forked child must not share its parent's sockets.
    global _client
    _client = None


os.register_at_fork(after_in_child=_drop_client)


def client() -> httpx.Client:
    """This process's client: connections pooled per endpoint origin, never through an environment proxy."""
    global _client
    if _client is None:
        _client = httpx.Client(
            transport=_GuardedTransport(httpx.Limits(max_connections=100, max_keepalive_connections=20)),
            timeout=httpx.Timeout(conf.webhook_timeout(), connect=conf.webhook_connect_timeout()),
            follow_redirects=False,
            trust_env=False,
            # Identity: a reply is read raw, a few bytes of it at most, never inflated.
            headers={
                "user-agent": USER_AGENT,
                "content-type": "application/json",
                "accept-encoding": "identity",
            },
        )
    return _client


def post(url: str, body: bytes, headers: dict[str, str]) -> Reply:
    """POST ``body`` to ``url``, following redirects by hand (re-POSTed, each hop checked by the guard),
    all within OBSERVERS_WEBHOOK_TIMEOUT. Raises WebhookRefused, DeliveryTimeout or an httpx error."""
    try:
        return _post(url, body, headers)
    except DeliveryTimeout:
        # Interrupted anywhere in httpx and httpcore: start this process's pool afresh.
        _close_client()
        raise


def _close_client() -> None:
    global _client
    if _client is not None:
        _client.close()
        _client = None


def _post(url: str, body: bytes, headers: dict[str, str]) -> Reply:
    with deadline(conf.webhook_timeout()):
        for _ in range(conf.webhook_max_redirects() + 1):
            guard.check_url(url, resolve_now=False)
            with client().stream("POST", url, content=body, headers=headers) as response:
                location = response.headers.get("location")
                if response.status_code in REDIRECTS and location:
                    _read_some(response.iter_raw())
                    url = urljoin(url, location)
                    continue
                return Reply(
                    status=response.status_code,
                    url=url,
                    retry_after=response.headers.get("retry-after"),
                    body=_read_some(response.iter_raw()),
                )
    raise TooManyRedirects(
        f"more than OBSERVERS_WEBHOOK_MAX_REDIRECTS={conf.webhook_max_redirects()} redirects"
    )


def _read_some(chunks: Iterator[bytes]) -> bytes:
    """At most BODY_READ_MAX bytes; a short reply is read to its end, so its connection is reused."""
    body = b""
    for chunk in chunks:
        body += chunk
        if len(body) > BODY_READ_MAX:
            break
    return body[:BODY_READ_MAX]


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise DeliveryTimeout in this block after ``seconds``: a total bound, where httpx bounds each
    operation alone (an endpoint trickling a byte at a time would otherwise never time out). Signals
    only reach the main thread; elsewhere only httpx's per-operation timeouts apply."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise DeliveryTimeout(f"no complete reply within OBSERVERS_WEBHOOK_TIMEOUT={seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
