"""A Server-Sent Events client for the tests: a real HTTP connection read on a thread of its own."""

import contextlib
import http.client
import json
import socket
import threading
from typing import Any
from urllib.parse import urlencode


class EventStream:
    """Opens ``GET path?params`` and collects the stream's events (``id``, ``event``, ``data`` decoded)."""

    def __init__(
        self,
        base: str,
        params: list[tuple[str, str]],
        *,
        headers: dict[str, str] | None = None,
        source: str | None = None,
    ) -> None:
        """``source``: the loopback address to connect from (another client, to the server)."""
        host, port = base.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(
            host, int(port), timeout=30, source_address=(source, 0) if source else None
        )
        self.connection.request("GET", f"/observers/stream?{urlencode(params)}", headers=headers or {})
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.events: list[dict[str, Any]] = []
        self.comments: list[str] = []
        self.opened = threading.Event()
        self.ended = threading.Event()
        if self.status != 200:
            self.body = self.response.read().decode()
            self.ended.set()
            return
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        event: dict[str, Any] = {}
        try:
            while line := self.response.readline():
                text = line.decode().rstrip("\n")
                if text.startswith(":"):
                    self.comments.append(text)
                    self.opened.set()
                elif text:
                    name, _, value = text.partition(": ")
                    event[name] = json.loads(value) if name == "data" else value
                elif event:
                    self.events.append(event)
                    event = {}
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass  # closed by close()
        finally:
            self.ended.set()

    def of(self, var_id: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event.get("event") == var_id]

    def close(self) -> None:
        """Disconnect as a client does: the socket goes away."""
        sock = self.connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.connection.close()
        self.ended.wait(5)
