"""Slow and idle clients cannot hold a worker: read deadlines per connection, and a cap on them.

uvicorn (0.55, httptools) arms no timer on a new connection and cancels its keep-alive timer at
the first byte, so a client that connects and sends nothing, sends its headers a byte at a time
(slowloris) or declares a body and never sends it holds a connection forever; with
``limit_concurrency`` a few hundred of them would shut everyone else out. ``GuardedHttpTools``
adds the missing deadlines at the protocol level, where they cost nothing per request on a
keep-alive connection (no timer is armed or cancelled for a request that arrives whole):

- headers: the request line and headers must be complete ``header_timeout`` seconds after the
  connection opened (first request) or after the request's first byte (later ones);
- body: once the headers are in, the body must keep arriving: at most ``body_timeout`` seconds
  between two pieces of it (a slow but steady upload of a large model is fine);
- headers are capped at ``MAX_HEADER_BYTES``.

What happens after the request is read (the model thinking) is not a read and has no deadline
here; the prediction's own timeout covers it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:  # not imported: an edge bundle's lean runtime has no pydantic
    from cloche.config import ServingSettings

log = logging.getLogger("cloche.serving")
MAX_HEADER_BYTES = 64 * 1024  # far above any real client's, far below harm
# `cloche serve` (an edge bundle, no settings object): ServingSettings' defaults.
EDGE_LIMITS: dict[str, Any] = {
    "max_connections": 1000,
    "header_timeout": 10.0,
    "body_timeout": 30.0,
    "keep_alive": 5,
}


# A connection's phase. Plain ints, not an Enum: these are read on every request, and an
# Enum member's lookup costs several times an int's (measured on Python 3.11).
HEADERS = 1  # waiting for (the rest of) a request line and headers
BODY = 2  # headers in, body still arriving
DONE = 3  # request read: the app's turn, or an idle keep-alive (uvicorn's own timer)


class GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body read deadlines."""

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        header_timeout: float,
        body_timeout: float,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self._phase = HEADERS
        self._deadline: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._begun = False  # a byte of the current request has arrived

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[arg-type]
        # A connection that never sends a byte is cut off like a slow one.
        self._deadline = self.loop.call_later(self.header_timeout, self._expired)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # the parser's callbacks below move the phase on
        if self._phase == DONE:
            if self._deadline is not None:
                self._cancel()
        elif self._phase == BODY:
            self._cancel()  # a deadline per gap between pieces, not for the whole body
            self._deadline = self.loop.call_later(self.body_timeout, self._expired)
        else:
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES:
                self._refuse(b"431 Request Header Fields Too Large")
            elif self._deadline is None:  # from the first byte of a later request
                self._deadline = self.loop.call_later(self.header_timeout, self._expired)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase, self._header_bytes, self._begun = HEADERS, 0, True

    def on_headers_complete(self) -> None:
        self._phase = BODY
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._phase = DONE
        super().on_message_complete()

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport is None or self.transport.is_closing():
            return
        if self._phase == BODY and self.flow.read_paused:
            # We stopped reading (the app has not asked for more yet): not the client's delay.
            self._deadline = self.loop.call_later(self.body_timeout, self._expired)
        elif self._phase != DONE:
            self._refuse(b"408 Request Timeout" if self._begun else None)

    def _refuse(self, status: bytes | None) -> None:
        """Answer ``status`` (when the client has asked anything) and close the connection.

        A request whose body timed out has an app task waiting in ``receive``: the close makes
        that ``http.disconnect``, so the app stops there and its own answer goes nowhere.
        """
        self._cancel()
        if status is not None:
            self.transport.write(
                b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
        self.transport.close()


def uvicorn_options(serving: ServingSettings) -> dict[str, Any]:
    """The uvicorn settings of ``cloche up`` that bound what clients can hold."""
    return connection_limits(
        max_connections=serving.max_connections,
        header_timeout=serving.header_timeout_seconds,
        body_timeout=serving.read_timeout_seconds,
        keep_alive=serving.keep_alive_seconds,
    )


def connection_limits(
    *, max_connections: int, header_timeout: float, body_timeout: float, keep_alive: int
) -> dict[str, Any]:
    """uvicorn settings: the guarded protocol, the connection cap and the keep-alive timeout.

    A ``partial`` of a module-level class, so it pickles into ``cloche up``'s worker processes.
    """
    return {
        "http": functools.partial(
            GuardedHttpTools, header_timeout=header_timeout, body_timeout=body_timeout
        ),
        # Over this many open connections (or requests in flight), uvicorn answers 503 and
        # closes: a clear "busy" rather than a worker that runs out of file descriptors.
        "limit_concurrency": max_connections,
        "timeout_keep_alive": keep_alive,
    }
