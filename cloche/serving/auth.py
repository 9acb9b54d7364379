"""Data-plane authentication: bearer tokens checked by an ``authenticate`` function, cached.

Whoever builds the data plane says how a token is checked: ``cloche up`` against the store's
tokens (cloche/server.py), an edge server against its one token's hash held in memory. The
cache keeps the store off the hot path; a revoked token stops working within ``ttl``.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping

from cloche.auth.roles import LOCAL_USER, Permission, Principal, authorize
from cloche.errors import Forbidden, Unauthorized

# Headers a reverse proxy adds: a request carrying one did not start on this machine.
FORWARDED_HEADERS = (b"x-forwarded-for", b"forwarded", b"x-real-ip")


def refuse_forwarded(headers: Mapping[bytes, bytes]) -> None:
    """Refuse a token-less request relayed by a proxy: an open loopback bind is for this machine.

    Behind a proxy every request arrives from loopback, so "loopback" no longer means "this
    machine's user". Called only where no token is required, so it costs nothing otherwise.
    """
    for name in FORWARDED_HEADERS:
        if name in headers:
            raise Forbidden(
                f"this server serves without tokens only to this machine, and the request "
                f"came through a proxy ({name.decode()})",
                hint="behind a proxy, set CLOCHE_AUTH__REQUIRED=true on the server and send "
                "'Authorization: Bearer <token>'",
            )


class TokenCache:
    def __init__(
        self, authenticate: Callable[[str], Principal], *, required: bool, ttl: float = 5.0
    ) -> None:
        # ``authenticate`` may block (a store query): it runs on a thread, its answers cached.
        self.authenticate = authenticate
        self.required = required
        self.ttl = ttl
        self._seen: dict[str, tuple[Principal | None, float]] = {}

    async def principal(
        self, authorization: bytes | None, permission: Permission = Permission.PREDICT
    ) -> Principal:
        """Who sends the request; raises Unauthorized, or Forbidden (role lacks ``permission``)."""
        if authorization is None:
            if self.required:
                raise Unauthorized(
                    "this server requires an API token",
                    hint="send 'Authorization: Bearer <token>'; create one with "
                    "`cloche tokens create --role predictor`",
                )
            return LOCAL_USER
        scheme, _, token = authorization.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("the Authorization header must read 'Bearer <token>'")
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        cached = self._seen.get(key)
        if cached is None or cached[1] < now:
            try:
                found: Principal | None = await asyncio.to_thread(self.authenticate, token)
            except Unauthorized:
                found = None
            if len(self._seen) > 10_000:
                self._seen.clear()
            cached = self._seen[key] = (found, now + self.ttl)
        if cached[0] is None:
            raise Unauthorized(
                "the API token is invalid or revoked",
                hint="create one with `cloche tokens create --role predictor`",
            )
        authorize(cached[0], permission)
        return cached[0]
