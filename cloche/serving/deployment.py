"""A deployment live in one worker: the model it names, its signature, input spec and batcher."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from cloche.runtimes.base import has_predict_proba
from cloche.serving.batcher import MAX_REQUEST_ROWS, AdaptiveBatcher, Job, Result
from cloche.serving.inputs import InputSpec
from cloche.serving.metrics import WorkerMetrics
from cloche.serving.model_cache import ModelCache
from cloche.serving.payload_log import LineEncoder, PayloadLog, encode_row
from cloche.serving.spec import DeploymentSpec
from cloche.signatures import Signature

QUEUE_BATCHES = 16  # a queue holds this many full batches before it answers 503


class RequestMeta:
    """What the payload log needs of a request, taken when it arrives, and the stages its batch
    reports back (see batcher.py).

    A slotted class rather than a frozen dataclass: it is built once per request, and a frozen
    dataclass's __init__ costs several times more.
    """

    __slots__ = (
        "batched",
        "load_s",
        "log_s",
        "logged",
        "predict_s",
        "request_id",
        "started",
        "time_ms",
    )

    def __init__(self, request_id: str, started: float, time_ms: int, logged: bool) -> None:
        self.request_id = request_id
        self.started = started  # perf_counter()
        self.time_ms = time_ms  # wall clock, for the log's time column
        self.logged = logged  # sampled into the payload log
        # Set by the batcher when its batch is answered: 0.0 until then (and for a request
        # answered in pieces, whose pieces carry no meta).
        self.batched = 0.0  # perf_counter() when its batch started
        self.predict_s = 0.0  # the model call
        self.log_s = 0.0  # the payload-log write of its batch
        self.load_s = 0.0  # waiting for its model to load (not resident when it queued)


def serving_outputs(signature: Signature) -> frozenset[str] | None:
    """The outputs a deployment serves, as the registry recorded them in the version's signature
    (``predict``, and ``probabilities`` for a model with predict_proba); None when the signature
    does not say (a version registered before they were recorded): then the model is asked."""
    names = {f.name for f in signature.outputs}
    if "predict" not in names:
        return None
    return frozenset(names & {"predict", "probabilities"})


def describe(spec: DeploymentSpec, cache: ModelCache) -> tuple[Signature, frozenset[str]]:
    """``spec``'s signature and outputs: from the registry, else from its model, once. Blocking
    (the fallback loads the model): call it off the event loop, where the model is warmed."""
    signature = Signature.from_dict(spec.signature)
    outputs = None if signature.is_empty else serving_outputs(signature)
    if outputs is not None:
        return signature, outputs
    with cache.pinned(spec, use=False) as model:  # asking the model is no request for it
        if signature.is_empty:
            signature = model.signature()
        outputs = serving_outputs(signature)
        if outputs is None or ("probabilities" not in outputs and has_predict_proba(model)):
            outputs = frozenset(
                {"predict"} | ({"probabilities"} if has_predict_proba(model) else set())
            )
    return signature, outputs


@dataclass
class LiveDeployment:
    """A deployment in this worker. It names its model (``spec``) and never holds it: the model
    cache owns residency, and each batch (and explanation) pins the model while it runs."""

    spec: DeploymentSpec
    cache: ModelCache
    signature: Signature
    inputs: InputSpec
    outputs: frozenset[str]
    batcher: AdaptiveBatcher
    payload_log: PayloadLog | None = None
    # Read on every request: computed once (``dataclasses.replace`` recomputes them).
    ref: str = field(init=False)
    timeout_s: float = field(init=False)

    def __post_init__(self) -> None:
        self.ref = self.spec.ref
        self.timeout_s = self.spec.timeout_ms / 1000

    def payload_sampled(self) -> bool:
        """Whether this request goes to the payload log (the endpoint's sampling rate)."""
        log = self.payload_log
        return log is not None and log.sampled(self.spec.log_sample_rate)

    @classmethod
    def start(
        cls,
        spec: DeploymentSpec,
        cache: ModelCache,
        payload_log: PayloadLog | None = None,
        metrics: WorkerMetrics | None = None,
        max_request_rows: int = MAX_REQUEST_ROWS,
        described: tuple[Signature, frozenset[str]] | None = None,
    ) -> LiveDeployment:
        """``described``: what ``describe`` said, when the caller ran it off the loop."""
        signature, outputs = described or describe(spec, cache)
        pinned = cache.pinned

        def predict(X: np.ndarray, wanted: frozenset[str]) -> dict[str, np.ndarray]:
            # Once per batch: the cache reloads an evicted model here, and holds it meanwhile.
            with pinned(spec) as model:
                result = {}
                if "predict" in wanted:
                    result["predict"] = np.asarray(model.predict(X))
                if "probabilities" in wanted:
                    result["probabilities"] = np.asarray(model.predict_proba(X))  # type: ignore[attr-defined]
                return result

        encoder = LineEncoder(
            spec.endpoint, spec.model, spec.version, spec.deployment_id, spec.shadow
        )
        ref = spec.ref

        def record(jobs: Sequence[Job], results: Sequence[Result]) -> None:
            if metrics is not None:
                metrics.batch(ref, sum(job.rows for job in jobs))
            if payload_log is None:
                return
            now = time.perf_counter()
            lines = [
                encoder.answered(job.meta, job.inputs, result, now)
                for job, result in zip(jobs, results, strict=True)
                # Failures are logged where they are answered, by the core (core.py).
                if job.meta is not None and job.meta.logged and isinstance(result, dict)
            ]
            payload_log.write(lines)

        def record_large(job: Job, result: dict[str, np.ndarray]) -> None:
            # A large request's pieces carry no meta, so the batches above skip them: it is
            # logged here, once and whole (model calls still count in metrics.batch).
            if payload_log is not None and job.meta is not None and job.meta.logged:
                payload_log.write(
                    [encoder.answered(job.meta, job.inputs, result, time.perf_counter())]
                )

        batcher = AdaptiveBatcher(
            predict,
            max_batch_size=spec.max_batch_size,
            max_queue_rows=spec.max_batch_size * QUEUE_BATCHES,
            name=f"{spec.endpoint}/{spec.ref}",
            on_batch=record,
            max_request_rows=max_request_rows,
            on_large=record_large,
            resident=partial(cache.resident, ModelCache.key(spec)),
            load=partial(cache.load, spec),
        )
        inputs = InputSpec.from_signature(signature)
        return cls(spec, cache, signature, inputs, outputs, batcher, payload_log)

    def same_runtime(self, spec: DeploymentSpec) -> bool:
        """True when ``spec`` can keep this live deployment (only traffic or sampling changed).

        The batch hook captured the old spec, so a change that the payload log records
        (shadow, version) needs a new live deployment.
        """
        old = self.spec
        return (
            spec.deployment_id == old.deployment_id
            and spec.max_batch_size == old.max_batch_size
            and spec.shadow == old.shadow
            and spec.timeout_ms == old.timeout_ms
        )

    async def predict(
        self, X: np.ndarray, outputs: frozenset[str], meta: RequestMeta | None = None
    ) -> dict[str, np.ndarray]:
        return await self.batcher.submit(X, outputs, self.timeout_s, meta)


def log_line(
    spec: DeploymentSpec,
    meta: RequestMeta,
    status: int,
    now: float,
    inputs: np.ndarray | str | None,
    outputs: dict[str, Any] | None,
    error: str | None = None,
    kind: str = "predict",
) -> bytes:
    """The payload-log line of one request answered by ``spec``'s deployment (see COLUMNS)."""
    latency_ms = (now - meta.started) * 1000
    return encode_row(
        (
            meta.time_ms,
            meta.request_id,
            spec.endpoint,
            spec.model,
            spec.version,
            spec.deployment_id,
            spec.shadow,
            status,
            latency_ms,
            inputs,
            outputs,
            error,
            kind,
        )
    )
