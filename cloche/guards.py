"""Pure ASGI guards that run before any routing: body size caps and Host/Origin checks.

They sit outside the framework so that a refused request costs no routing, parsing or
dependency work, and so that the data plane can reuse them unchanged. A leaf (standard library
and cloche.errors only): the API, ``cloche up``'s composition root and the edge server all wrap
their apps in them, and an edge bundle's lean runtime imports them without Starlette.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
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
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if error.http_status == HTTPStatus.UNAUTHORIZED:
        headers.append((b"www-authenticate", b"Bearer"))
    await send(
        {"type": "http.response.start", "status": int(error.http_status), "headers": headers}
    )
    await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    """Raised from ``receive`` to stop whatever is reading an oversized body."""


@dataclass(frozen=True)
class BodyCap:
    """The largest body a kind of route takes, and the setting that raises it."""

    max_bytes: int
    setting: str

    def error(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"the request body is larger than the server's limit of {_size(self.max_bytes)}",
            hint=f"raise {self.setting} on the server if such a body is expected",
        )


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


class BodySizeLimit:
    """Refuse bodies over their cap with 413, by Content-Length or while streaming.

    Most routes take small JSON (``cap``); the routes matched by ``upload_routes`` (method and
    path pattern) take files, up to ``upload_cap``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        cap: BodyCap,
        upload_cap: BodyCap | None = None,
        upload_routes: Sequence[tuple[str, re.Pattern[str]]] = (),
    ) -> None:
        self.app = app
        self.cap = cap
        self.upload_cap = upload_cap or cap
        self.upload_routes = tuple(upload_routes)

    def _cap_for(self, scope: Scope) -> BodyCap:
        method, path = scope.get("method"), scope.get("path", "")
        for upload_method, pattern in self.upload_routes:
            if method == upload_method and pattern.match(path):
                return self.upload_cap
        return self.cap

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self._cap_for(scope)
        declared = header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap.max_bytes:
            await send_error(send, cap.error())
            return

        received = 0
        exceeded = started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap.max_bytes:
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
            await send_error(send, cap.error())


def header(scope: Scope, name: bytes) -> str | None:
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
        raw_host = header(scope, b"host") or ""
        origin = header(scope, b"origin")
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
