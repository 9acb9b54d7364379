"""Adaptive batching with no timer.

While the model runs one batch, new requests queue; when it returns, everything queued (up to
``max_batch_size`` rows) becomes the next batch. An idle model answers at once; a busy one
spreads its per-call cost over many requests. The queue is bounded in rows: a full queue refuses
at once (503) instead of growing memory, and a request past its deadline gets 504 without
disturbing the others.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from cloche.errors import ClocheError, Overloaded, PredictFailed, Timeout

# (stacked inputs, which outputs) -> {output name: array with one entry per row}
PredictFn = Callable[[np.ndarray, frozenset[str]], dict[str, np.ndarray]]


@dataclass(eq=False)
class _Job:
    inputs: np.ndarray
    outputs: frozenset[str]
    future: asyncio.Future[dict[str, np.ndarray]]
    rows: int = field(init=False)

    def __post_init__(self) -> None:
        self.rows = len(self.inputs)


class AdaptiveBatcher:
    """One per deployment in each worker; all methods run on the event loop."""

    def __init__(
        self,
        predict: PredictFn,
        *,
        max_batch_size: int,
        max_queue_rows: int,
        name: str,
    ) -> None:
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_queue_rows = max_queue_rows
        self.name = name
        self._queue: deque[_Job] = deque()
        self.queued_rows = 0
        self._running = False
        self._drainer: asyncio.Task[None] | None = None
        # One thread per model: predict calls never overlap, so batches form while one runs.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"predict-{name}")
        self.batches = 0
        self.last_batch_rows = 0

    async def submit(
        self, inputs: np.ndarray, outputs: frozenset[str], timeout_s: float
    ) -> dict[str, np.ndarray]:
        """Queue ``inputs`` and wait for their outputs, at most ``timeout_s`` seconds."""
        if self.queued_rows + len(inputs) > self.max_queue_rows:
            raise Overloaded(
                f"{self.name} is at capacity ({self.queued_rows} rows queued)",
                hint="retry after a moment, or deploy with a larger max_batch_size",
            )
        loop = asyncio.get_running_loop()
        job = _Job(inputs, outputs, loop.create_future())
        self._queue.append(job)
        self.queued_rows += job.rows
        if not self._running:
            self._running = True
            self._drainer = loop.create_task(self._drain())
        timer = loop.call_later(timeout_s, self._expire, job, timeout_s)
        try:
            return await job.future
        finally:
            timer.cancel()

    def _expire(self, job: _Job, timeout_s: float) -> None:
        if not job.future.done():
            job.future.set_exception(
                Timeout(f"{self.name} did not answer within {timeout_s * 1000:.0f} ms")
            )

    def _take_batch(self) -> list[_Job]:
        batch: list[_Job] = []
        rows = 0
        while self._queue:
            job = self._queue[0]
            if batch and rows + job.rows > self.max_batch_size:
                break
            self._queue.popleft()
            self.queued_rows -= job.rows
            if job.future.done():  # expired while queued: skip its work
                continue
            batch.append(job)
            rows += job.rows
        return batch

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                batch = self._take_batch()
                if not batch:
                    continue
                results = await loop.run_in_executor(self._executor, self._run, batch)
                for job, result in zip(batch, results, strict=True):
                    if job.future.done():
                        continue
                    if isinstance(result, BaseException):
                        job.future.set_exception(result)
                    else:
                        job.future.set_result(result)
        finally:
            self._running = False

    def _run(self, batch: list[_Job]) -> list[dict[str, np.ndarray] | BaseException]:
        wanted = frozenset().union(*(job.outputs for job in batch))
        stacked = batch[0].inputs if len(batch) == 1 else np.concatenate([j.inputs for j in batch])
        try:
            outputs = self._call(stacked, wanted)
        except ClocheError as exc:
            if len(batch) == 1:
                return [exc]
            # One request's rows may be what the model chokes on: run each alone so only
            # that request fails.
            return [self._run([job])[0] for job in batch]
        self.batches += 1
        self.last_batch_rows = len(stacked)
        results: list[dict[str, np.ndarray] | BaseException] = []
        start = 0
        for job in batch:
            stop = start + job.rows
            results.append({k: v[start:stop] for k, v in outputs.items() if k in job.outputs})
            start = stop
        return results

    def _call(self, inputs: np.ndarray, wanted: frozenset[str]) -> dict[str, np.ndarray]:
        try:
            return self._predict(inputs, wanted)
        except ClocheError:
            raise
        except Exception as exc:
            raise PredictFailed(f"{self.name} failed to predict: {exc}") from exc
