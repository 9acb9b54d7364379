"""One port for everything: the data plane, the control-plane API, and their lifecycle.

``build_app`` composes the ASGI app a worker serves; ``app_factory`` is what uvicorn imports in
each worker process (settings come from the CLOCHE_* environment the supervisor passes down).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from cloche.api.app import create_app
from cloche.api.security import HostOriginGuard
from cloche.config import Settings, is_loopback
from cloche.serving.app import DataPlane, Receive, Send
from cloche.serving.auth import TokenCache
from cloche.serving.router import Router
from cloche.store.store import Store

log = logging.getLogger("cloche.serving")
DATA_PREFIXES = ("/v1/", "/v2")


class Server:
    """Routes /v1 and /v2 to the data plane and the rest to the control-plane API."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.router = Router(store, poll_seconds=settings.serving.poll_ms / 1000)
        self.data_plane = DataPlane(
            self.router,
            TokenCache(store, required=settings.auth_required),
            max_body_bytes=settings.serving.max_request_mb * 2**20,
        )
        self.api = create_app(settings, store)
        self._watcher: asyncio.Task[None] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(DATA_PREFIXES):
            await self.data_plane(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            await self.api(scope, receive, send)  # type: ignore[arg-type]

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.router.refresh()  # serve only once every model is loaded
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                self._watcher = asyncio.get_running_loop().create_task(self.router.watch())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.data_plane.draining = True
                if self._watcher is not None:
                    self._watcher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await self._watcher
                self.store.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def build_app(settings: Settings, store: Store | None = None) -> HostOriginGuard:
    server = Server(settings, store if store is not None else Store.open(settings))
    return HostOriginGuard(server, loopback_only=is_loopback(settings.server.host))  # type: ignore[arg-type]


def app_factory() -> HostOriginGuard:
    """What each uvicorn worker process builds (``factory=True``)."""
    return build_app(Settings())
