"""Endpoint routing: the traffic split, per-version lookup, shadows, and live reloads.

A worker holds one immutable routing table. When the serving generation moves, the new table is
built beside the old one (new models loaded first, off the event loop) and swapped in with one
assignment, so a deploy never drops a request: in-flight requests finish on the deployment they
were routed to.
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import logging
import random
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from cloche.errors import ClocheError, DeploymentNotFound, EndpointNotFound, NotReady
from cloche.serving.batcher import MAX_REQUEST_ROWS
from cloche.serving.deployment import LiveDeployment, describe, serving_outputs
from cloche.serving.metrics import WorkerMetrics
from cloche.serving.metrics import label as metrics_label
from cloche.serving.model_cache import ModelCache
from cloche.serving.payload_log import PayloadLog
from cloche.serving.spec import DeploymentSpec, Snapshot
from cloche.signatures import Signature

if TYPE_CHECKING:
    from cloche.store.store import Store

log = logging.getLogger("cloche.serving")
RETRY_COLD_S = 5.0  # how often a worker retries the warm-up of a deployment that failed it
# How long a routing change waits for one model's warm-up (CLOCHE_SERVING__LOAD_WAIT_SECONDS):
# past it the load goes on in its thread, the deployment is not ready ("still loading"), and
# the other deployments are applied, so one hung load cannot stop a worker from serving.
LOAD_WAIT_S = 60.0


@dataclass(frozen=True)
class EndpointRoute:
    name: str
    live: tuple[LiveDeployment, ...]
    cumulative: tuple[int, ...]  # running sum of traffic, for a weighted pick
    shadows: tuple[LiveDeployment, ...]
    by_version: dict[str, LiveDeployment]

    @classmethod
    def build(
        cls, name: str, deployments: list[LiveDeployment], cold: frozenset[int] = frozenset()
    ) -> EndpointRoute:
        """``cold``: deployment ids whose warm-up failed in this worker. They take no traffic
        while another deployment of the endpoint can (a canary that cannot load leaves its
        share to the stable one); if none can, they keep it, and answer 503 naming why."""
        live = tuple(d for d in deployments if not d.spec.shadow and d.spec.traffic > 0)
        warm = tuple(d for d in live if d.spec.deployment_id not in cold)
        live = warm or live
        sums, total = [], 0
        for d in live:
            total += d.spec.traffic
            sums.append(total)
        by_version: dict[str, LiveDeployment] = {}
        for d in deployments:
            by_version[d.spec.ref] = d
            by_version.setdefault(str(d.spec.version), d)
        shadows = tuple(d for d in deployments if d.spec.shadow)
        return cls(name, live, tuple(sums), shadows, by_version)

    def choose(self) -> LiveDeployment:
        if not self.live:
            raise NotReady(
                f"endpoint {self.name!r} has no deployment taking traffic",
                hint=f"deploy a model with `cloche endpoints deploy {self.name} MODEL:VERSION`",
            )
        if len(self.live) == 1:
            return self.live[0]
        pick = random.random() * self.cumulative[-1]
        return self.live[bisect.bisect_right(self.cumulative, pick)]

    def version(self, version: str) -> LiveDeployment:
        found = self.by_version.get(version)
        if found is None:
            have = ", ".join(sorted({d.spec.ref for d in self.by_version.values()})) or "none"
            raise DeploymentNotFound(
                f"endpoint {self.name!r} serves no version {version!r} (deployed: {have})"
            )
        return found


@dataclass(frozen=True)
class Readiness:
    """Whether a deployment can answer in this worker now: ``resident`` when its model is
    loaded (it answered its warm-up), or routable and loadable on demand under a memory budget;
    not ready, with the reason, when its load or warm-up failed."""

    ready: bool
    resident: bool
    reason: str | None = None

    def to_dict(self, name: str, version: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "ready": self.ready, "resident": self.resident}
        if version is not None:
            body["version"] = version
        if self.reason is not None:
            body["reason"] = self.reason
        return body


class SnapshotSource(Protocol):
    """Where a router learns what to serve: the metadata store, or an edge bundle."""

    def generation(self) -> int: ...

    def snapshot(self) -> Snapshot: ...


class Router:
    """The routing table of one worker, kept in step with its source."""

    def __init__(
        self,
        source: SnapshotSource,
        cache: ModelCache,
        *,
        poll_seconds: float = 0.5,
        payload_log: PayloadLog | None = None,
        metrics: WorkerMetrics | None = None,
        max_request_rows: int = MAX_REQUEST_ROWS,
        load_wait_seconds: float = LOAD_WAIT_S,
    ) -> None:
        self.source = source
        self.load_wait_seconds = load_wait_seconds
        # Cache key -> (warm-up under way on a thread, when it began): never two at once.
        self._warming: dict[str, tuple[asyncio.Future[str | None], float]] = {}
        self.max_request_rows = max_request_rows
        self.payload_log = payload_log
        self.metrics = metrics
        self.cache = cache
        self.poll_seconds = poll_seconds
        self.generation = -1
        self.routes: dict[str, EndpointRoute] = {}
        self._live: dict[int, LiveDeployment] = {}
        self.ready = False
        self.load_errors: dict[str, str] = {}
        # Deployment id -> why its warm-up failed in this worker: such a deployment takes no
        # traffic from a warm one, and its warm-up is retried every ``retry_seconds``.
        self.cold: dict[int, str] = {}
        self.retry_seconds = RETRY_COLD_S
        self._snapshot: Snapshot | None = None
        self._retried = 0.0

    @classmethod
    def for_store(cls, store: Store, **options: Any) -> Router:
        """The router of a `cloche up` worker, following the metadata store."""
        # Imported here: an edge server's runtime has no SQLAlchemy (cloche/edge/).
        from cloche.serving.state import StoreSource, artifact_locator

        return cls(StoreSource(store), ModelCache(artifact_locator(store)), **options)

    def endpoint(self, name: str) -> EndpointRoute:
        route = self.routes.get(name)
        if route is None:
            if not self.ready:
                raise NotReady("the server is still loading its models; retry in a moment")
            failed = [r for k, r in self.load_errors.items() if k.startswith(f"{name}/")]
            if failed:  # deployed, but no deployment of it could be set up in this worker
                raise NotReady(
                    f"endpoint {name!r} cannot serve yet: {'; '.join(failed)}",
                    hint="see `cloche endpoints show` and the server log; it is retried",
                )
            raise EndpointNotFound(
                f"endpoint {name!r} does not exist or has no deployments",
                hint="list endpoints with `cloche endpoints list`",
            )
        return route

    async def refresh(self) -> bool:
        """Apply the store's state if its generation moved; True when the table changed."""
        generation = await asyncio.to_thread(self.source.generation)
        if generation == self.generation:
            return await self._retry_cold()
        snapshot = await asyncio.to_thread(self.source.snapshot)
        await self.apply(snapshot)
        return True

    async def _retry_cold(self) -> bool:
        """Warm the deployments whose warm-up failed again (a fixed store heals without a
        deploy); True when one became warm and the table was rebuilt to give it traffic."""
        now = time.monotonic()
        if not self.cold or self._snapshot is None or now - self._retried < self.retry_seconds:
            return False
        self._retried = now
        before = set(self.cold)
        await self.apply(self._snapshot)
        return set(self.cold) != before

    async def apply(self, snapshot: Snapshot) -> None:
        live: dict[int, LiveDeployment] = {}
        routes: dict[str, EndpointRoute] = {}
        errors: dict[str, str] = {}
        cold: dict[int, str] = {}
        for name, specs in snapshot.endpoints.items():
            deployments = []
            loading: set[int] = set()  # deployments whose load outlasted load_wait_seconds
            for spec in specs:
                try:
                    deployment = await self._live_for(spec, cold, loading)
                    deployments.append(deployment)
                except Exception as exc:  # one broken model must not stop the others
                    errors[f"{name}/{spec.ref}"] = str(exc)
                    log.error("cannot load %s for endpoint %s: %s", spec.ref, name, exc)
            for d in deployments:
                live[d.spec.deployment_id] = d
            old = self.routes.get(name)
            if loading and old is not None:
                # Traffic moves only to warm models: the endpoint keeps the table it had until
                # the new deployment has loaded (the cold retry rebuilds it then).
                routes[name] = old
                live.update({d.spec.deployment_id: d for d in old.by_version.values()})
            elif deployments:
                routes[name] = EndpointRoute.build(name, deployments, frozenset(cold))
        # Replaced deployments are simply dropped: requests already routed to them hold a
        # reference and finish; their predict thread exits once the batcher is collected.
        self.routes, self._live, self.generation = routes, live, snapshot.generation
        self.load_errors, self.cold, self._snapshot = errors, cold, snapshot
        # Ready once the table is applied: every model that fits was loaded and answered its
        # warm-up before this point (a failed one is reported per model, see readiness()).
        self.ready = True
        self.cache.evict({ModelCache.key(d.spec) for d in live.values()})
        # Models and modules live as long as the worker: take them out of the cyclic GC's
        # view, or each full collection walks them all (measured: 70+ ms p99 stalls).
        gc.freeze()

    async def _live_for(
        self, spec: DeploymentSpec, cold: dict[int, str], loading: set[int]
    ) -> LiveDeployment:
        """``spec`` live in this worker, warmed first (off the loop) unless it already was;
        a failed warm-up is recorded in ``cold``, one still under way in ``loading`` too."""
        current = self._live.get(spec.deployment_id)
        if current is not None and current.same_runtime(spec):
            if spec.deployment_id in self.cold:
                # Warmed again; the model may have loaded on a request meanwhile.
                failure, still = await self._warm_bounded(spec)
                if failure is not None:
                    cold[spec.deployment_id] = failure
                if still:
                    loading.add(spec.deployment_id)
            # Same deployment id: same endpoint and version; only its share or sampling moved.
            return current if current.spec == spec else replace(current, spec=spec)
        # Off the loop: loading the model (the cache owns it; the deployment only names it),
        # and its signature and outputs (from the registry; from the model for old versions).
        failure, still = await self._warm_bounded(spec)
        if failure is not None:
            cold[spec.deployment_id] = failure
        if still:
            loading.add(spec.deployment_id)
        described = _from_registry(spec) if still else None
        if still and described is None:
            raise NotReady(failure or "", hint="its signature waits for the model to load")
        if described is None:
            described = await asyncio.to_thread(describe, spec, self.cache)
        return LiveDeployment.start(
            spec, self.cache, self.payload_log, self.metrics, self.max_request_rows, described
        )

    async def _warm_bounded(self, spec: DeploymentSpec) -> tuple[str | None, bool]:
        """Warm ``spec`` on a thread, waiting at most ``load_wait_seconds`` (and not at all for
        a warm-up an earlier change began): why it is not warm (None if it is) and whether its
        load is still under way."""
        key = ModelCache.key(spec)
        running = self._warming.get(key)
        if running is None:
            task = asyncio.ensure_future(asyncio.to_thread(self._warm_up, spec))
            running = self._warming[key] = (task, time.monotonic())
            task.add_done_callback(lambda _: self._warming.pop(key, None))
            wait = self.load_wait_seconds
        else:
            wait = 0.0
        warming, began = running
        try:
            return await asyncio.wait_for(asyncio.shield(warming), wait), False
        except TimeoutError:
            waited = time.monotonic() - began
            log.warning("%s is still loading after %.0f s", spec.ref, waited)
            return f"model {spec.ref} is still loading ({waited:.0f} s so far)", True

    def _warm_up(self, spec: DeploymentSpec) -> str | None:
        """Load ``spec``'s model if it fits (its warm-up prediction is part of the load); the
        reason when that failed."""
        try:
            self.cache.warm(spec)
        except Exception as exc:
            # Still routable: its requests retry the load and get 503 naming the reason.
            log.error("cannot load %s for endpoint %s: %s", spec.ref, spec.endpoint, exc)
            return exc.message if isinstance(exc, ClocheError) else str(exc)
        return None

    def readiness(self, deployment: LiveDeployment) -> Readiness:
        """Whether ``deployment`` can answer in this worker now (see Readiness)."""
        key = ModelCache.key(deployment.spec)
        if self.cache.resident(key):
            return Readiness(ready=True, resident=True)
        error = self.cache.last_error(key)  # the latest attempt's, a request's retry included
        reason = (
            f"model {deployment.spec.ref} cannot be loaded: {error}"
            if error is not None
            else self.cold.get(deployment.spec.deployment_id)
        )
        if reason is not None:
            return Readiness(ready=False, resident=False, reason=reason)
        if self.cache.budget_bytes is not None:
            # Not held, by the budget's choice: the first request loads it.
            return Readiness(ready=True, resident=False)
        return Readiness(False, False, f"model {deployment.spec.ref} is not loaded yet")

    def endpoint_readiness(self, name: str, version: str | None = None) -> Readiness:
        """Readiness of an endpoint (ready when a deployment taking traffic is) or of one of
        its versions. Raises as ``endpoint()`` does for an unknown endpoint or version."""
        route = self.endpoint(name)
        if version is not None:
            return self.readiness(route.version(version))
        if not route.live:
            return Readiness(False, False, f"endpoint {name!r} has no deployment taking traffic")
        states = [self.readiness(d) for d in route.live]
        ready = [r for r in states if r.ready]
        if ready:
            return Readiness(True, any(r.resident for r in ready))
        return Readiness(False, False, "; ".join(r.reason or "not ready" for r in states))

    def not_ready(self) -> dict[str, str]:
        """Every deployment not ready in this worker, as endpoint/ref -> reason."""
        out = dict(self.load_errors)
        for d in self._live.values():
            state = self.readiness(d)
            if not state.ready:
                out[f"{d.spec.endpoint}/{d.spec.ref}"] = state.reason or "not ready"
        return out

    def gauges(self) -> dict[str, dict[str, float]]:
        """Point-in-time values for /metrics: queue depth (model loads are the cache's)."""
        queue = {}
        for d in self._live.values():
            key = metrics_label(endpoint=d.spec.endpoint, deployment=d.spec.ref)
            queue[key] = float(d.batcher.queued_rows)
        return {"cloche_queue_rows": queue}

    async def watch(self) -> None:
        """Poll the generation forever; a failed poll is logged and retried."""
        while True:
            try:
                await self.refresh()
            except Exception as exc:
                log.warning("could not refresh deployments: %s", exc)
            await asyncio.sleep(self.poll_seconds)


def _from_registry(spec: DeploymentSpec) -> tuple[Signature, frozenset[str]] | None:
    """``spec``'s signature and outputs when the registry recorded them (no model needed)."""
    signature = Signature.from_dict(spec.signature)
    outputs = None if signature.is_empty else serving_outputs(signature)
    return (signature, outputs) if outputs is not None else None
