"""A deployment live in one worker: its model, signature, input spec and batcher."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cloche.runtimes.base import LoadedModel, has_predict_proba
from cloche.serving.batcher import MAX_REQUEST_ROWS, AdaptiveBatcher, Job, Result
from cloche.serving.inputs import InputSpec
from cloche.serving.metrics import WorkerMetrics
from cloche.serving.payload_log import LineEncoder, PayloadLog, encode_row
from cloche.serving.spec import DeploymentSpec
from cloche.signatures import Signature

QUEUE_BATCHES = 16  # a queue holds this many full batches before it answers 503


class RequestMeta:
    """What the payload log needs of a request, taken when it arrives.

    A slotted class rather than a frozen dataclass: it is built once per request, and a frozen
    dataclass's __init__ costs several times more.
    """

    __slots__ = ("logged", "request_id", "started", "time_ms")

    def __init__(self, request_id: str, started: float, time_ms: int, logged: bool) -> None:
        self.request_id = request_id
        self.started = started  # perf_counter()
        self.time_ms = time_ms  # wall clock, for the log's time column
        self.logged = logged  # sampled into the payload log


@dataclass
class LiveDeployment:
    spec: DeploymentSpec
    model: LoadedModel
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
        model: LoadedModel,
        payload_log: PayloadLog | None = None,
        metrics: WorkerMetrics | None = None,
        max_request_rows: int = MAX_REQUEST_ROWS,
    ) -> LiveDeployment:
        signature = Signature.from_dict(spec.signature)
        if signature.is_empty:
            signature = model.signature()
        outputs = {"predict"} | ({"probabilities"} if has_predict_proba(model) else set())

        def predict(X: np.ndarray, wanted: frozenset[str]) -> dict[str, np.ndarray]:
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
                # Failures are logged where they are answered, in the data plane.
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
        )
        inputs = InputSpec.from_signature(signature)
        return cls(spec, model, signature, inputs, frozenset(outputs), batcher, payload_log)

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
