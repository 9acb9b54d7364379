"""Sending an answer: status line, headers and body in one write when the server allows it.

uvicorn's httptools protocol writes an answer's head (at ``http.response.start``) and its body
in two ``transport.write`` calls, and on an idle socket each is a ``send()`` system call of its
own: two TCP segments per answer, and the first of the two was the largest single cost in the
serving profile. When ``send`` is that protocol's own method, the data plane writes the whole
answer at once and leaves the request cycle in the state uvicorn's ``send`` would (measured at 64
connections: 67 -> 56 µs of CPU per request). Under any other server or state (h11, a test
client, write flow control engaged, a connection about to close, a HEAD request) it sends the
two ASGI messages, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("cloche.serving")
Send = Callable[[dict[str, Any]], Awaitable[None]]

_CYCLE: type[Any] | None
_STATUS_LINE: dict[int, bytes]
try:  # uvicorn[standard] brings httptools; without it there is only the ASGI way
    from uvicorn.protocols.http import httptools_impl

    _CYCLE, _STATUS_LINE = httptools_impl.RequestResponseCycle, httptools_impl.STATUS_LINE
except ImportError:  # pragma: no cover
    _CYCLE, _STATUS_LINE = None, {}


class Responder:
    """Sends answers; one per data plane (it caches uvicorn's encoded default headers)."""

    def __init__(self) -> None:
        self._defaults_of: object = None
        self._defaults = b""
        self.fast = _CYCLE is not None

    def write(
        self, send: Send, method: str, status: int, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> bool:
        """Write the answer at once if ``send`` is uvicorn's httptools cycle in a state its
        fast path covers; False when it must go as ASGI messages (``send_asgi``)."""
        cycle = getattr(send, "__self__", None)
        return (
            self.fast
            and type(cycle) is _CYCLE
            and method != "HEAD"
            and self._write(cycle, status, headers, body)
        )

    async def send_asgi(
        self, send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _write(
        self, cycle: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> bool:
        """Write the answer through uvicorn's transport at once; False: send it the ASGI way."""
        try:
            if (
                cycle.response_started
                or cycle.disconnected
                or not cycle.keep_alive
                or cycle.flow.write_paused
            ):
                return False
            access_log = cycle.access_log
            transport = cycle.transport
            defaults = cycle.default_headers  # uvicorn's date (and configured) headers
            message_event = cycle.message_event
            on_response = cycle.on_response
        except AttributeError:
            # A uvicorn whose internals moved: say so once and keep to plain ASGI from now on.
            log.warning(
                "serving: uvicorn's HTTP cycle is not the one expected; answers go "
                "through plain ASGI sends"
            )
            self.fast = False
            return False
        status_line = _STATUS_LINE.get(status)
        if status_line is None:
            return False
        if defaults is not self._defaults_of:  # uvicorn replaces the list once a second
            self._defaults = b"".join([b"%s: %s\r\n" % (k, v) for k, v in defaults])
            self._defaults_of = defaults
        parts = [status_line, self._defaults]
        for name, value in headers:
            parts.append(b"%s: %s\r\n" % (name, value))
        parts.append(b"\r\n")
        parts.append(body)
        if access_log:  # as uvicorn logs it (`cloche up` turns it off)
            scope = cycle.scope
            cycle.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                client_addr(scope),
                scope["method"],
                path_with_query(scope),
                scope["http_version"],
                status,
            )
        cycle.response_started = True
        cycle.waiting_for_100_continue = False
        cycle.response_complete = True
        transport.write(b"".join(parts))
        message_event.set()  # a receive() still waiting learns the request is over
        on_response()  # keep-alive timer, the next pipelined request
        return True


# The access line's parts, from the ASGI scope alone: uvicorn's own helpers changed what they
# need from the scope between releases (0.55 reads ``raw_path``, which not every scope holds).
def client_addr(scope: dict[str, Any]) -> str:
    """``host:port`` of the client, or "" when the server did not say."""
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else ""


def path_with_query(scope: dict[str, Any]) -> str:
    """The request target as the client sent it (quotes escaped for the log line)."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else scope.get("path", "")
    query = scope.get("query_string", b"")
    if query:
        path = f"{path}?{query.decode('latin-1')}"
    return path.replace('"', "%22")
