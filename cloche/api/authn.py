"""Authentication of the control plane, before the framework sees the request.

FastAPI reads and parses a request's body (multipart spools files to disk) before it resolves
dependencies, so a token checked in a dependency would come after the body. This pure ASGI
middleware checks the bearer token from the headers alone and answers 401 without calling
``receive``; the principal it found rides in the scope for ``deps.get_principal``. Roles are
still checked per route, in the dependencies.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from cloche.auth import tokens
from cloche.auth.roles import Principal
from cloche.errors import ClocheError, Unauthorized
from cloche.guards import header, send_error

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from cloche.store.store import Store

PRINCIPAL_KEY = "cloche.principal"
TOKEN_HINT = (
    "send 'Authorization: Bearer <token>'; on the server's machine `cloche tokens local` prints "
    "the local admin token (the CLI and SDK read it by themselves); other tokens come from "
    "`cloche tokens create`"
)


class BearerAuth:
    """Require a valid bearer token on every path under ``prefix`` except ``open_paths``."""

    def __init__(
        self, app: ASGIApp, *, store: Store, prefix: str, open_paths: frozenset[str]
    ) -> None:
        self.app = app
        self.store = store
        self.prefix = prefix
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or not path.startswith(self.prefix)
            or path.rstrip("/") in self.open_paths
        ):
            await self.app(scope, receive, send)
            return
        try:
            scope[PRINCIPAL_KEY] = await self._principal(header(scope, b"authorization"))
        except ClocheError as error:  # Unauthorized; or Unavailable, when the store is down
            await send_error(send, error)  # the body stays unread: receive is never called
            return
        await self.app(scope, receive, send)

    async def _principal(self, authorization: str | None) -> Principal:
        if authorization is None:
            raise Unauthorized("this server requires an API token", hint=TOKEN_HINT)
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("the Authorization header is not 'Bearer <token>'", hint=TOKEN_HINT)
        # A store query: on a thread, so a slow database never stalls the event loop.
        return await asyncio.to_thread(tokens.authenticate, self.store, token)


def principal_of(scope: Scope) -> Principal:
    """The principal ``BearerAuth`` accepted for this request."""
    principal = scope.get(PRINCIPAL_KEY)
    if not isinstance(principal, Principal):
        # A route outside BearerAuth's prefix asked for a caller: refuse rather than guess.
        raise Unauthorized("this server requires an API token", hint=TOKEN_HINT)
    return principal
