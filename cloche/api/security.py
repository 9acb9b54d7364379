"""Pure ASGI guards that run before any routing: body size cap and Host/Origin checks.

They sit outside the framework so that a refused request costs no routing, parsing or
dependency work, and so that the data plane can reuse them unchanged.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cloche.errors import ClocheError, Forbidden, PayloadTooLarge
from cloche.hosts import LOOPBACK_HOSTS

if TYPE_CHECKING:  # an edge server guards its data plane with these, without Starlette
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Multipart framing (boundaries, part headers, the small form fields) on top of the files.
MULTIPART_OVERHEAD = 256 * 1024
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


async def send_error(send: Send, error: ClocheError) -> None:
    """Send ``error`` as the API's JSON error body, outside any framework."""
    body = json.dumps(error.to_dict()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": int(error.http_status),
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    """Raised from ``receive`` to stop whatever is reading an oversized body."""


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the request body is larger than the server's limit of {limit / 2**20:.0f} MiB",
        hint="raise CLOCHE_STORE__MAX_UPLOAD_MB on the server if this upload is expected",
    )


class BodySizeLimit:
    """Refuse bodies over ``max_bytes`` with 413, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await send_error(send, _too_large(self.max_bytes))
            return

        received = 0
        exceeded = started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # whatever the app answers to an aborted body is replaced by the 413
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            # Frameworks wrap or re-raise the abort in their own ways; the flag is the truth.
            if not exceeded:
                raise
        if exceeded and not started:
            await send_error(send, _too_large(self.max_bytes))


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def split_host(value: str, default_port: int) -> tuple[str, int] | None:
    """``host[:port]`` (IPv6 in brackets) as (lowercase host, port); None if malformed."""
    parsed = urlsplit(f"//{value}")
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:
        return None
    if not host or parsed.path or parsed.username is not None:
        return None
    return host.lower(), port if port is not None else default_port


def _origin(value: str) -> tuple[str, int] | None:
    parsed = urlsplit(value)
    if parsed.scheme not in DEFAULT_PORTS:
        return None  # "null" and other opaque origins never match
    return split_host(parsed.netloc, DEFAULT_PORTS[parsed.scheme])


class HostOriginGuard:
    """Refuse DNS-rebinding and cross-site browser requests.

    On a loopback bind only loopback Host names are served: a page on evil.example whose name
    was re-pointed at 127.0.0.1 still sends ``Host: evil.example``. On any bind, a request
    with an ``Origin`` (sent by browsers) must come from the server's own host and port.
    Clients that send no Origin (curl, the SDK) are not affected.
    """

    def __init__(self, app: ASGIApp, *, loopback_only: bool) -> None:
        self.app = app
        self.loopback_only = loopback_only
        self._decided: dict[tuple[str, str, str | None], Forbidden | None] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        problem = self._problem(scope)
        if problem is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": problem.message})
        else:
            await send_error(send, problem)

    def _problem(self, scope: Scope) -> Forbidden | None:
        scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
        raw_host = _header(scope, b"host") or ""
        origin = _header(scope, b"origin")
        # Clients send the same few Host/Origin pairs over and over: decide each pair once.
        key = (scheme, raw_host, origin)
        if key in self._decided:
            return self._decided[key]
        problem = self._judge(scheme, raw_host, origin)
        if len(self._decided) < 1024:
            self._decided[key] = problem
        return problem

    def _judge(self, scheme: str, raw_host: str, origin: str | None) -> Forbidden | None:
        host = split_host(raw_host, DEFAULT_PORTS[scheme])
        if host is None:
            return Forbidden(f"missing or malformed Host header {raw_host!r}")
        if self.loopback_only and host[0] not in LOOPBACK_HOSTS:
            return Forbidden(
                f"this server is bound to loopback and does not serve the host {host[0]!r}",
                hint="use http://127.0.0.1 or http://localhost with the server's port",
            )
        if origin is not None and _origin(origin) != host:
            return Forbidden(
                f"cross-origin request from {origin} refused",
                hint="open the console from the server's own address; browsers on other "
                "sites may not call this API",
            )
        return None
