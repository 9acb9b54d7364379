"""`cloche serve DIR`: one bundle served on the data plane of `cloche up`, with nothing else.

The same DataPlane (V1, OIP v2 REST, batching, validation, errors, metrics) over a router whose
only source is the bundle's manifest: no metadata store, no registry, no network. The payload log
goes to a capped local spool (spool.py) until `cloche edge sync` uploads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloche.auth.roles import Principal
from cloche.edge.bundle import Bundle, open_bundle
from cloche.edge.spool import Spool, WhenFull
from cloche.errors import InvalidInput, Unauthorized
from cloche.guards import HostOriginGuard
from cloche.hosts import is_loopback
from cloche.serving import metrics
from cloche.serving.app import DataPlane, Receive, Send
from cloche.serving.auth import TokenCache
from cloche.serving.connections import EDGE_LIMITS, connection_limits
from cloche.serving.metrics import WorkerMetrics
from cloche.serving.model_cache import ModelCache
from cloche.serving.router import Router
from cloche.serving.spec import Snapshot

log = logging.getLogger("cloche.edge")
TOKEN_ENV = "CLOCHE_EDGE_TOKEN"
EDGE_ROLE = "deployer"  # predict, and read /metrics
PUBLISH_EVERY_S = 1.0


@dataclass(frozen=True)
class EdgeOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    spool: Path | None = None  # default: DIR/spool
    spool_max_mb: float = 512.0
    when_full: WhenFull = WhenFull.STOP
    log_predictions: bool = True
    max_batch_size: int | None = None
    max_request_mb: int = 32


class BundleSource:
    """A router's source that never changes: the one deployment the bundle describes."""

    def __init__(self, bundle: Bundle, max_batch_size: int | None) -> None:
        self._snapshot = bundle.snapshot(max_batch_size=max_batch_size)

    def generation(self) -> int:
        return self._snapshot.generation

    def snapshot(self) -> Snapshot:
        return self._snapshot


def token_checker(token: str) -> Any:
    """Compare a bearer token with ``token``, holding only its hash in memory."""
    expected = hashlib.sha256(token.encode()).digest()

    def authenticate(given: str) -> Principal:
        if not hmac.compare_digest(hashlib.sha256(given.encode()).digest(), expected):
            raise Unauthorized(f"the token does not match this edge server's {TOKEN_ENV}")
        return Principal(actor="edge-token", role=EDGE_ROLE)

    return authenticate


class EdgeServer:
    """The ASGI app of `cloche serve`: a DataPlane, its lifespan, and the spool's upkeep."""

    def __init__(self, bundle: Bundle, options: EdgeOptions, token: str | None) -> None:
        self.bundle = bundle
        spool_dir = options.spool or bundle.root / "spool"
        self.spool = Spool(
            spool_dir,
            max_bytes=int(options.spool_max_mb * 2**20),
            when_full=options.when_full,
        )
        self.metrics = WorkerMetrics()
        self.metrics_dir = spool_dir / "metrics"
        payload_log = self.spool if options.log_predictions else None
        self.router = Router(
            BundleSource(bundle, options.max_batch_size),
            ModelCache(lambda spec: bundle.model_dir),
            payload_log=payload_log,
            metrics=self.metrics,
        )
        authenticate = token_checker(token) if token else _no_tokens
        self.data_plane = DataPlane(
            self.router,
            TokenCache(authenticate, required=token is not None),
            max_body_bytes=options.max_request_mb * 2**20,
            payload_log=payload_log,
            metrics=self.metrics,
            render_metrics=self.render_metrics,
        )
        self._tasks: list[asyncio.Task[None]] = []

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self.data_plane(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.router.refresh()
                    if self.router.load_errors:
                        raise RuntimeError("; ".join(self.router.load_errors.values()))
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                self._tasks = [asyncio.get_running_loop().create_task(self._publish())]
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.data_plane.draining = True
                for task in self._tasks:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                self.spool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def publish_metrics(self) -> None:
        gauges = self.router.gauges() | self.spool.gauges()
        metrics.publish(self.metrics_dir, self.metrics.snapshot(gauges))

    def render_metrics(self) -> str:
        self.publish_metrics()
        return metrics.render(self.metrics_dir)

    async def _publish(self) -> None:
        while True:
            await asyncio.sleep(PUBLISH_EVERY_S)
            try:
                await asyncio.to_thread(self.publish_metrics)
            except Exception as exc:  # housekeeping never takes serving down
                log.warning("could not publish metrics: %s", exc)


def _no_tokens(token: str) -> Principal:
    raise Unauthorized(
        f"this edge server takes no tokens; start it with {TOKEN_ENV} set to require one"
    )


def build_edge_app(root: Path, options: EdgeOptions) -> HostOriginGuard:
    """The app for ``root``: the bundle verified first, and a token required off loopback."""
    token = os.environ.get(TOKEN_ENV) or None
    # A custom model's model.py is imported from the bundle: no __pycache__ may appear beside
    # it, or the next start would refuse the bundle (an unlisted file in model/).
    sys.dont_write_bytecode = True
    loopback = is_loopback(options.host)
    if not loopback and token is None:
        raise InvalidInput(
            f"serving on {options.host} (beyond this machine) needs a token",
            hint=f"set {TOKEN_ENV} to a secret; clients send 'Authorization: Bearer <it>'",
        )
    bundle = open_bundle(root)
    server = EdgeServer(bundle, options, token)
    return HostOriginGuard(server, loopback_only=loopback)  # type: ignore[arg-type]


def serve(root: Path, options: EdgeOptions) -> None:
    """Serve the bundle in ``root`` until stopped (SIGINT/SIGTERM)."""
    import uvicorn

    app = build_edge_app(root, options)
    sock = bind_socket(options.host, options.port)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        **connection_limits(**EDGE_LIMITS),  # an edge site's clients are no kinder
    )
    server = uvicorn.Server(config)
    port = sock.getsockname()[1]
    print(f"cloche serve: {root} at http://{options.host}:{port}", file=sys.stderr, flush=True)
    server.run(sockets=[sock])
    if not server.started:
        raise SystemExit(3)  # uvicorn printed why (the model did not load)


def bind_socket(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that ``--port 0`` can say which port it got."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InvalidInput(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            hint="choose another --port, or stop what holds this one",
        ) from None
    sock.set_inheritable(True)
    return sock
