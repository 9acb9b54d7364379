"""The composition root of ``cloche up``: one port for the data plane and the control-plane API.

It is the one module that may import every layer: it mounts the data plane (cloche/serving),
the REST API (cloche/api) and the scheduler, and runs the payload log's housekeeping (the logs
service) beside the workers' serving, so none of those has to import another's layer.

``build_app`` composes the ASGI app a worker serves; ``app_factory`` is what uvicorn imports in
each worker process (settings come from the CLOCHE_* environment the supervisor passes down).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from cloche import scheduler
from cloche.api.app import create_app
from cloche.auth import tokens
from cloche.config import Settings
from cloche.console.app import with_console
from cloche.guards import HostOriginGuard
from cloche.hosts import is_loopback
from cloche.logs import ingest
from cloche.logs import service as logs
from cloche.logs import shared as shared_log
from cloche.serving import metrics
from cloche.serving.app import DataPlane, Receive, Send
from cloche.serving.auth import TokenCache
from cloche.serving.cache_setup import server_cache
from cloche.serving.core import Call
from cloche.serving.metrics import WorkerMetrics
from cloche.serving.payload_log import PayloadLog, RetentionCounts
from cloche.serving.router import Router
from cloche.serving.tracing import request_tracer
from cloche.store.store import Store

if TYPE_CHECKING:
    from cloche.serving.grpc_server import GrpcServer

log = logging.getLogger("cloche.serving")
DATA_PREFIXES = ("/v1/", "/v2", "/metrics")
COMPACT_EVERY_S = 60.0
RETAIN_EVERY_S = 3600.0  # with no new segments; with them, retention follows each compaction
STOP_GRACE_S = 1.0
NATIVE_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class Server:
    """Routes /v1 and /v2 to the data plane and the rest to the control-plane API."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.log_root = logs.log_root(store.home)
        self.payload_log = PayloadLog(self.log_root)
        self.retention = RetentionCounts()  # what this worker's compaction children removed
        self.metrics = WorkerMetrics()
        self.server_id = server_id = os.environ.get("CLOCHE_SERVER_ID") or str(os.getpid())
        self.metrics_dir = store.home / "run" / server_id / "metrics"
        self.router = Router.for_store(
            store,
            poll_seconds=settings.serving.poll_ms / 1000,
            payload_log=self.payload_log,
            metrics=self.metrics,
            max_request_rows=settings.serving.max_request_rows,
            load_wait_seconds=settings.serving.load_wait_seconds,
        )
        # This worker's share of the model memory budget, sizes from the registry, load stages
        # into its metrics, and its state file for `cloche models loaded`.
        self.router.cache = server_cache(settings, store, server_id, self.metrics)
        # Each request's stages as OpenTelemetry spans, when an OTLP endpoint is set.
        self.tracer = request_tracer(settings, server_id)
        self.data_plane = DataPlane(
            self.router,
            store_tokens(store, required=settings.auth_required),
            max_body_bytes=settings.serving.max_request_mb * 2**20,
            payload_log=self.payload_log,
            metrics=self.metrics,
            render_metrics=self.render_metrics,
            server_timing=settings.serving.server_timing,
            feedback=self._feedback,
            on_finished=None if self.tracer is None else self._trace,
        )
        # The console sits beside the API, not inside it: it has its own body caps and session gate.
        self.api = with_console(create_app(settings, store), settings, store)
        self._tasks: list[asyncio.Task[None]] = []
        self._grpc: GrpcServer | None = None

    def _trace(self, call: Call) -> None:
        assert self.tracer is not None
        if call.endpoint is None or call.timing is None:
            return  # not a prediction (health, metadata, metrics): no span
        deployment = call.deployment.ref if call.deployment is not None else None
        self.tracer.record(
            call.rid,
            call.endpoint,
            deployment,
            call.status,
            call.wall_ns,
            call.timing,
            traceparent=call.traceparent,
        )

    def _feedback(self, endpoint: str, labels: Any, actor: str) -> dict[str, Any]:
        from cloche.monitoring.feedback import record_feedback  # off the predict path

        return record_feedback(self.store, endpoint, labels, actor=actor).model_dump()

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(DATA_PREFIXES):
            await self.data_plane(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            await self.api(scope, receive, send)  # type: ignore[arg-type]

    async def _start_grpc(self, port: int) -> GrpcServer:
        # Imported here: only a server with gRPC on needs the grpc extra. Every worker listens
        # on the port `cloche up` reserved for them all (SO_REUSEPORT).
        from cloche.serving.grpc_server import start_grpc_server

        return await start_grpc_server(
            self.router,
            self.data_plane.auth,
            core=self.data_plane.core,
            host=self.settings.server.host,
            port=port,
            max_message_mb=self.settings.serving.grpc_max_message_mb,
            reuse_port=True,
            max_calls=self.settings.serving.max_connections,
            handshake_seconds=self.settings.serving.header_timeout_seconds,
            tls=self._tls_files(),
        )

    def _tls_files(self) -> tuple[bytes, bytes] | None:
        """The certificate chain and key of CLOCHE_SERVER__TLS_*, for gRPC (read at start)."""
        cert, key = self.settings.server.tls_cert_file, self.settings.server.tls_key_file
        if cert is None or key is None:
            return None
        return cert.read_bytes(), key.read_bytes()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.router.refresh()  # serve once each model is warm or past load_wait
                    limit_native_threads(self.settings.serving.threads_per_worker)
                    if self.settings.serving.grpc_port is not None:
                        self._grpc = await self._start_grpc(self.settings.serving.grpc_port)
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                self._report_not_ready_on_stop()
                loop = asyncio.get_running_loop()
                self._tasks = [
                    loop.create_task(self.router.watch()),
                    loop.create_task(self._tidy()),
                    loop.create_task(self._sample_traffic()),
                ]
                if self.settings.scheduler.enabled:
                    self._tasks.append(
                        loop.create_task(scheduler.for_server(self.store, self.settings).run())
                    )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.data_plane.draining = True
                if self._grpc is not None:  # first: its calls use the log and the store
                    await self._grpc.stop(self.settings.serving.drain_seconds)
                for task in self._tasks:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                self.payload_log.close()
                logs.write_stats(self.log_root, self.payload_log.stats())
                self.store.close()
                self.router.cache.close()
                if self.tracer is not None:  # flushes its spans; bounded with a hung collector
                    await asyncio.to_thread(self.tracer.shutdown)
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _report_not_ready_on_stop(self) -> None:
        """On SIGTERM/SIGINT: answer not-ready at once, read what clients already sent, then drain.

        uvicorn installs its handlers before the app starts; we wrap them. For a short grace
        the server keeps reading, so a request that was sent while the model held the event
        loop becomes an accepted one (uvicorn would close its connection as idle), and a load
        balancer polling /v2/health/ready sees 503 before the listener closes.
        """
        if threading.current_thread() is not threading.main_thread():
            return  # an embedded server (tests) has no signal handlers to wrap
        loop = asyncio.get_running_loop()
        grace = min(STOP_GRACE_S, self.settings.serving.drain_seconds)
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue

            def handler(signum: int, frame: Any, previous: Any = previous) -> None:
                if self.data_plane.draining:  # a second signal: stop now
                    previous(signum, frame)
                    return
                self.data_plane.draining = True
                if self._grpc is not None:
                    self._grpc.servicer.draining = True
                loop.call_soon_threadsafe(loop.call_later, grace, previous, signum, frame)

            signal.signal(sig, handler)

    async def _compact_in_child(self, retention_due: bool) -> None:
        """Compaction (and retention) runs as its own niced process: never on this worker's GIL."""
        if not retention_due and not await asyncio.to_thread(
            logs.has_closed_segments, self.log_root
        ):
            return  # nothing to do: spare the process start
        serving = self.settings.serving
        shared = await asyncio.to_thread(
            functools.partial(shared_log.compaction_args, retention_due=retention_due),
            self.settings,
            self.store,
        )
        # Spawned as a task of its own: a cancel (shutdown) that lands while the child is being
        # started must still find it, to stop and reap it before the loop closes.
        spawn = asyncio.ensure_future(
            asyncio.create_subprocess_exec(
                "nice",
                "-n",
                "10",
                sys.executable,
                "-m",
                "cloche.logs.compact",
                str(self.log_root),
                f"--max-age-days={serving.log_retention_days}",
                f"--max-mb={serving.log_max_mb}",
                *shared,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        )
        proc: asyncio.subprocess.Process | None = None
        try:
            proc = await asyncio.shield(spawn)
            out, err = await proc.communicate()
        except asyncio.CancelledError:
            # Shutting down: stop the child (compaction is idempotent) and reap it.
            proc = proc or await spawn
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.communicate()
            raise
        if proc.returncode != 0:
            log.warning("payload log compaction failed: %s", err.decode(errors="replace")[-500:])
            return
        self.retention.add(out)

    def _sample_traffic(self) -> Coroutine[Any, Any, None]:
        """History for the endpoint charts: one worker per server samples the counters."""
        from cloche.monitoring.traffic_samples import run_sampler

        every = self.settings.serving.traffic_sample_seconds
        return run_sampler(self.store, self.metrics_dir, self.server_id, every)

    def publish_metrics(self) -> None:
        gauges = self.router.gauges() | self.payload_log.gauges() | self.retention.gauges()
        metrics.publish(self.metrics_dir, self.metrics.snapshot(gauges))

    def render_metrics(self) -> str:
        """Every worker's metrics of this server; this worker's are published fresh first."""
        self.publish_metrics()
        return metrics.render(self.metrics_dir)

    async def _tidy(self) -> None:
        """Off the hot path: publish log counters; compact closed and orphaned segments."""
        last_compaction = -COMPACT_EVERY_S  # at start: segments a dead worker left behind
        last_retention = -RETAIN_EVERY_S  # and at start: whatever aged while it was down
        # A shared log: other replicas see only compacted rows, so the open segment is closed
        # every publish_seconds (when it holds anything) and compaction follows as often.
        publish = self.settings.logs.publish_seconds if self.settings.logs.shared else None
        compact_every = min(COMPACT_EVERY_S, publish or COMPACT_EVERY_S)
        last_publish, published = 0.0, self.payload_log.logged
        while True:
            await asyncio.sleep(1.0)
            try:
                await asyncio.to_thread(logs.write_stats, self.log_root, self.payload_log.stats())
                await asyncio.to_thread(self.publish_metrics)
                loop = asyncio.get_running_loop()
                if publish and loop.time() - last_publish > publish:
                    last_publish = loop.time()
                    if self.payload_log.logged != published:  # on the loop, as writes are
                        published = self.payload_log.logged
                        self.payload_log.close()  # the next write opens a new segment
                # Not at each rotation: under heavy logging that is every few seconds, and the
                # child competes for the same cores. Reads see uncompacted segments anyway.
                if loop.time() - last_compaction > compact_every:
                    last_compaction = loop.time()
                    await asyncio.to_thread(ingest.recover, self.store)  # edge uploads cut short
                    # Retention also runs when nothing new was logged: old hours still age.
                    retention_due = loop.time() - last_retention > RETAIN_EVERY_S
                    if retention_due:
                        last_retention = loop.time()
                    await self._compact_in_child(retention_due)
            except Exception as exc:  # housekeeping must never take serving down
                log.warning("payload log housekeeping failed: %s", exc)


def limit_native_threads(threads: int) -> None:
    """Cap BLAS/OpenMP threads in this worker: one worker per core already uses every core.

    Measured: HistGradientBoosting's OpenMP threads spinning against each other (and against
    the other workers) cost more than they gain on small batches.
    """
    if threads <= 0:
        return
    for name in NATIVE_THREAD_VARS:  # read by the libraries when they load; users' values win
        os.environ.setdefault(name, str(threads))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # no scikit-learn in this install, so nothing to limit
        return
    threadpool_limits(threads)


def store_tokens(store: Store, *, required: bool) -> TokenCache:
    """The data plane's token check: tokens as `cloche tokens create` made them, in the store."""
    return TokenCache(functools.partial(tokens.authenticate, store), required=required)


def build_app(settings: Settings, store: Store | None = None) -> HostOriginGuard:
    limit_native_threads(settings.serving.threads_per_worker)  # before any framework loads
    server = Server(settings, store if store is not None else Store.open(settings))
    return HostOriginGuard(server, loopback_only=is_loopback(settings.server.host))  # type: ignore[arg-type]


def app_factory() -> HostOriginGuard:
    """What each uvicorn worker process builds (``factory=True``)."""
    return build_app(Settings())
