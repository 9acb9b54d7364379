"""The prediction core: one code path from a decoded request to its outputs, for every protocol.

V1 and OIP v2 REST (app.py) and OIP v2 gRPC (grpc_server.py) only read, decode and encode;
everything between is here, once: choosing the deployment (the traffic split, or the version a
request pins), sampling into the payload log, mirroring to shadows, queueing with the
deployment's timeout, timing the stages, logging failures, metering, and the ``on_finished``
hook at the end of every request (where a tracer hangs its spans).

Stages, in seconds, in ``Call.timing`` when the server sends Server-Timing or has a hook:
``decode`` (the protocol's decoder), ``queue`` (waiting in the batcher before its batch
started), ``load`` (only when its model was not resident: the cold load it waited for),
``predict`` (the model call of its batch), ``log`` (the payload-log write of its
batch, or of its failure), ``encode`` and ``total``. Queue, predict and log are reported back by
the batcher on the request's RequestMeta, so timing costs the hot path a few float stores.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import numpy as np

from cloche.serving.calls import INLINE_DECODE_BYTES, MAX_LOGGED_BYTES, log_failure
from cloche.serving.calls import mirror_to_shadows as _mirror
from cloche.serving.deployment import LiveDeployment, RequestMeta
from cloche.serving.metrics import WorkerMetrics
from cloche.serving.router import EndpointRoute

log = logging.getLogger("cloche.serving")
T = TypeVar("T")


class Decoded(Protocol):
    """What a protocol's decoder gives the core: the rows, and the outputs asked for."""

    @property
    def inputs(self) -> np.ndarray: ...

    @property
    def outputs(self) -> frozenset[str]: ...


D = TypeVar("D", bound=Decoded)
# (the protocol's payload, the deployment it goes to) -> its decoded request
Decode = Callable[[Any, LiveDeployment], D]
# (the decoded request, its outputs, the deployment that answered, the call) -> the answer
Encode = Callable[[D, dict[str, np.ndarray], LiveDeployment, "Call"], T]


class Call:
    """One request, from its arrival to its answer: what the hook, the log and metrics need."""

    __slots__ = (
        "body",
        "deployment",
        "endpoint",
        "inputs",
        "kind",
        "meta",
        "rid",
        "stage_at",
        "started",
        "status",
        "timing",
        "traceparent",
        "wall_ns",
    )

    def __init__(self, rid: str, timed: bool) -> None:
        self.rid = rid
        self.endpoint: str | None = None  # set once the request names a known endpoint
        self.kind = "predict"  # or "explain": metered and logged apart
        self.started = self.stage_at = time.perf_counter()
        self.wall_ns = time.time_ns()  # the wall clock at arrival: the log's time, a span's start
        # Stage durations in seconds; None when nobody reads them (no Server-Timing, no hook).
        self.timing: dict[str, float] | None = {} if timed else None
        self.deployment: LiveDeployment | None = None
        self.meta: RequestMeta | None = None
        self.body: Any = b""  # what a failure logs when it has no decoded inputs
        self.inputs: np.ndarray | None = None
        self.status = 0  # set when the request is finished
        self.traceparent: str | None = None  # the caller's W3C trace context, when traced


# Called once per request, when it is finished (answered or failed). Must not raise or block.
OnFinished = Callable[[Call], None]


class PredictionCore:
    """The steps around a prediction, shared by the protocols of one worker."""

    def __init__(
        self,
        *,
        metrics: WorkerMetrics | None = None,
        server_timing: bool = False,
        on_finished: OnFinished | None = None,
    ) -> None:
        self.metrics = metrics
        self.server_timing = server_timing
        self.on_finished = on_finished
        self.timed = server_timing or on_finished is not None
        self._background: set[asyncio.Task[Any]] = set()  # shadows' calls, held until done

    def call(self, rid: str) -> Call:
        return Call(rid, self.timed)

    def route(self, call: Call, route: EndpointRoute, version: str | None = None) -> LiveDeployment:
        """Choose ``call``'s deployment (the traffic split, or the pinned version) and sample it
        into the payload log. From here on a failure is logged against that deployment."""
        deployment = route.choose() if version is None else route.version(version)
        call.deployment = deployment
        call.meta = RequestMeta(
            call.rid, call.started, call.wall_ns // 1_000_000, deployment.payload_sampled()
        )
        return deployment

    async def predict(
        self,
        call: Call,
        route: EndpointRoute,
        version: str | None,
        payload: Any,
        size: int,
        decode: Decode[D],
        encode: Encode[D, T],
    ) -> T:
        """Route, decode (on a thread when ``size`` is large), mirror to shadows, queue, await
        and encode one prediction. Errors propagate: the protocol answers them and calls
        ``finished``, which logs them."""
        deployment = self.route(call, route, version)
        t0 = time.perf_counter()
        if size <= INLINE_DECODE_BYTES:
            request = decode(payload, deployment)
        else:  # the loop goes on answering health checks and small requests meanwhile
            request = await asyncio.to_thread(decode, payload, deployment)
        X = call.inputs = request.inputs
        outputs = request.outputs
        if not outputs <= deployment.outputs:
            outputs &= deployment.outputs
        meta = call.meta
        assert meta is not None
        t1 = time.perf_counter()
        if version is None and route.shadows:  # a request pinned to a version is not shadowed
            _mirror(route, X, outputs, meta, self._background)
        result = await deployment.batcher.enqueue(X, outputs, deployment.timeout_s, meta)
        t2 = time.perf_counter()
        answer = encode(request, result, deployment, call)
        timing = call.timing
        if timing is not None:
            timing["decode"] = t1 - t0
            if meta.batched:
                timing["queue"] = meta.batched - t1 - meta.load_s
                if meta.load_s:  # its model was not resident: the cold load it waited for
                    timing["load"] = meta.load_s
                timing["predict"] = meta.predict_s
                timing["log"] = meta.log_s
            else:  # answered in pieces (large.py): the wait is all one stage
                timing["predict"] = t2 - t1
            timing["encode"] = time.perf_counter() - t2
        return answer

    def finished(self, call: Call, status: int, error: str | None = None) -> None:
        """The end of every request, answered or failed: its failure logged (when sampled),
        total time, metrics, then the hook. ``error``: the failure's message."""
        call.status = status
        if error is not None and call.deployment is not None and call.meta is not None:
            t = time.perf_counter()
            inputs: Any = call.inputs
            if inputs is None:
                body = call.body
                inputs = (
                    body[:MAX_LOGGED_BYTES].decode("utf-8", "replace")
                    if isinstance(body, bytes)
                    else body
                )
            log_failure(call.deployment, call.meta, inputs, status, error, call.kind)
            if call.timing is not None:
                call.timing["log"] = time.perf_counter() - t
        total = time.perf_counter() - call.started
        if call.timing is not None:
            call.timing["total"] = total
        if self.metrics is not None and call.endpoint is not None:
            ref = call.deployment.ref if call.deployment is not None else "-"
            if call.kind == "predict":
                self.metrics.request(call.endpoint, ref, status, total)
            else:
                self.metrics.explain(call.endpoint, ref, status, total)
        if self.on_finished is not None:
            try:
                self.on_finished(call)
            except Exception:  # a tracer's fault must never fail the request it watched
                log.exception("the on_finished hook failed for request %s", call.rid)


def server_timing(timing: dict[str, float]) -> bytes:
    """The Server-Timing header of a call's stages, in milliseconds."""
    return ", ".join([f"{k};dur={v * 1000:.3f}" for k, v in timing.items()]).encode()
