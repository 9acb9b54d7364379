"""Adaptive batching with no timer.

While the model runs one batch, new requests queue; when it returns, everything queued (up to
``max_batch_size`` rows) becomes the next batch. The model runs on the worker's event-loop
thread: requests that arrive meanwhile wait in the socket backlog and are read, decoded and
queued together as soon as it returns. Measured against a predict thread, this saves a thread
hop (about 60 µs per batch, which an idle model would pay on every request) and avoids GIL
hand-offs between the two threads. An idle model answers at once; a busy one
spreads its per-call cost over many requests. The queue is bounded in rows: a full queue refuses
at once (503) instead of growing memory, and a request past its deadline gets 504 without
disturbing the others. A request with more rows than a batch is split (``large.py``): its pieces
join the queue one at a time, so it waits for room instead of being refused, and answers whole.

A batch starts once a turn of the event loop reads no new request for it: while requests keep
arriving (clients answering the last batch's replies with their next request), the batch waits
for them, for at most one model call's time. Without this, closed-loop clients split into
cohorts that alternate between a tiny batch and a large one, and the tiny batches pay the
model's whole per-call cost (measured: HistGradientBoosting batches of 2, 62, 2, 62... rows at
64 connections). A lone request never waits: the first turn reads nothing new.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from cloche.errors import (
    ClocheError,
    InvalidInput,
    Overloaded,
    PayloadTooLarge,
    PredictFailed,
    Timeout,
    Unavailable,
)
from cloche.serving.large import Answered, LargeRequest

# (stacked inputs, which outputs) -> {output name: array with one entry per row}
PredictFn = Callable[[np.ndarray, frozenset[str]], dict[str, np.ndarray]]
Result = dict[str, np.ndarray] | BaseException
# Called with each answered batch before its requests are answered (the payload log). A job's
# ``meta`` (a RequestMeta, or None) is told when its batch started (``batched``, perf_counter),
# how long the model call took (``predict_s``) and the hook (``log_s``): its queue, predict and
# log stages.
BatchHook = Callable[[Sequence["Job"], Sequence[Result]], None]
MAX_FILL_S = 0.005  # never wait longer than this for a batch to fill, whatever the model costs
# Rows one request may have (CLOCHE_SERVING__MAX_REQUEST_ROWS): its inputs and outputs are held
# whole, and it holds its model for rows / max_batch_size calls.
MAX_REQUEST_ROWS = 1_000_000


class Job:
    """One request's rows, waiting in a deployment's queue."""

    __slots__ = ("deadline", "future", "inputs", "meta", "outputs", "rows", "timeout_s")

    def __init__(
        self,
        inputs: np.ndarray,
        outputs: frozenset[str],
        future: asyncio.Future[dict[str, np.ndarray]],
        deadline: float,
        timeout_s: float,
        meta: Any = None,
    ) -> None:
        self.inputs = inputs
        self.outputs = outputs
        self.future = future
        self.deadline = deadline
        self.timeout_s = timeout_s
        self.meta = meta
        self.rows = len(inputs)


class AdaptiveBatcher:
    """One per deployment in each worker; all methods run on the event loop."""

    def __init__(
        self,
        predict: PredictFn,
        *,
        max_batch_size: int,
        max_queue_rows: int,
        name: str,
        on_batch: BatchHook | None = None,
        max_request_rows: int = MAX_REQUEST_ROWS,
        on_large: Answered | None = None,
        resident: Callable[[], bool] | None = None,
        load: Callable[[], object] | None = None,
    ) -> None:
        self._predict = predict
        # Whether the model is loaded, and how to load it (blocking): a batch for a model that
        # is not resident waits for a load on a thread, so the loop keeps serving the others.
        self._resident = resident
        self._load = load
        self._on_batch = on_batch
        self._on_large = on_large
        self.max_batch_size = max_batch_size
        self.max_queue_rows = max_queue_rows
        self.max_request_rows = max_request_rows
        # One comparison on the hot path sends both large and over-the-cap requests aside.
        self._split_above = min(max_batch_size, max_request_rows)
        self.name = name
        self._queue: deque[Job] = deque()
        self._waiting: deque[Job] = deque()  # large requests' pieces waiting for queue room
        self.queued_rows = 0
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._arrivals = 0  # requests queued so far, to tell whether a loop turn read new ones
        self._arrivals_seen = 0
        self._fill_until = 0.0
        self._call_s = 0.0  # how long the last model call took
        self._load_started = 0.0  # when the model's load off the loop began
        self._loaded_now = False  # the next batch follows a load: no second residency check
        self._loading = False  # a load off the loop is under way
        self._expiry: asyncio.TimerHandle | None = None  # answers requests a load outlasts

    async def submit(
        self, inputs: np.ndarray, outputs: frozenset[str], timeout_s: float, meta: Any = None
    ) -> dict[str, np.ndarray]:
        """Queue ``inputs`` and wait for their outputs, at most ``timeout_s`` seconds."""
        return await self.enqueue(inputs, outputs, timeout_s, meta)

    def enqueue(
        self, inputs: np.ndarray, outputs: frozenset[str], timeout_s: float, meta: Any = None
    ) -> asyncio.Future[dict[str, np.ndarray]]:
        """``submit`` without its coroutine: the future of ``inputs``' outputs (the data plane
        awaits it directly, one frame less per request). Raises Overloaded when the queue is
        full, PayloadTooLarge past ``max_request_rows``."""
        rows = len(inputs)
        if rows > self._split_above:
            return self._enqueue_large(inputs, outputs, timeout_s, meta)
        if self.queued_rows + rows > self.max_queue_rows:
            raise self._full()
        # (What _push does, inline: one call less per request.)
        loop = self._loop = asyncio.get_running_loop()
        now = loop.time()
        job = Job(inputs, outputs, loop.create_future(), now + timeout_s, timeout_s, meta)
        self._queue.append(job)
        self.queued_rows += job.rows
        self._arrivals += 1
        if not self._scheduled:
            # A plain callback, not a task: it runs after every request already read in this
            # loop iteration has queued, so they all join the batch.
            self._scheduled = True
            self._arrivals_seen = self._arrivals
            self._fill_until = now + min(self._call_s, MAX_FILL_S)
            loop.call_soon(self._run_next_batch)
        elif self._loading and self._expiry is None:
            self._expiry = loop.call_at(job.deadline, self._expire)
        return job.future

    def _full(self) -> Overloaded:
        return Overloaded(
            f"the queue of {self.name} is full ({self.queued_rows} rows waiting, at most "
            f"{self.max_queue_rows})",
            hint="retry in a moment; if this persists, add workers (CLOCHE_SERVING__WORKERS) or "
            f"deploy with a larger max_batch_size (the queue holds "
            f"{self.max_queue_rows // self.max_batch_size} batches)",
        )

    def _enqueue_large(
        self, inputs: np.ndarray, outputs: frozenset[str], timeout_s: float, meta: Any
    ) -> asyncio.Future[dict[str, np.ndarray]]:
        rows = len(inputs)
        if rows > self.max_request_rows:
            raise PayloadTooLarge(
                f"{self.name} takes at most {self.max_request_rows:,} rows per request "
                f"(CLOCHE_SERVING__MAX_REQUEST_ROWS); this one has {rows:,}",
                hint="send the rows in several requests, or run a batch job "
                "(`cloche batch`), or raise CLOCHE_SERVING__MAX_REQUEST_ROWS",
            )
        loop = self._loop = asyncio.get_running_loop()
        whole = Job(inputs, outputs, loop.create_future(), loop.time() + timeout_s, timeout_s, meta)
        LargeRequest(whole, self.max_batch_size, self._admit, self._on_large).start()
        return whole.future

    def _admit(self, piece: Job) -> None:
        """Queue a large request's piece if the queue has room, else once a batch makes room."""
        if self._waiting or self.queued_rows + piece.rows > self.max_queue_rows:
            self._waiting.append(piece)
        else:
            self._push(piece)

    def _admit_waiting(self) -> None:
        waiting = self._waiting
        while waiting and self.queued_rows + waiting[0].rows <= self.max_queue_rows:
            self._push(waiting.popleft())

    def _push(self, job: Job) -> None:
        loop = self._loop
        assert loop is not None
        self._queue.append(job)
        self.queued_rows += job.rows
        self._arrivals += 1
        if not self._scheduled:
            self._scheduled = True
            self._arrivals_seen = self._arrivals
            self._fill_until = loop.time() + min(self._call_s, MAX_FILL_S)
            loop.call_soon(self._run_next_batch)
        elif self._loading and self._expiry is None:
            self._expiry = loop.call_at(job.deadline, self._expire)

    def _take_batch(self, now: float) -> list[Job]:
        # Deadlines are checked when a batch is formed: the loop runs nothing else while the
        # model predicts, so that is the first moment a waiting request can be answered.
        batch: list[Job] = []
        rows = 0
        queue = self._queue
        while queue:
            job = queue[0]
            if batch and rows + job.rows > self.max_batch_size:
                break
            queue.popleft()
            self.queued_rows -= job.rows
            if job.future.done():  # the client is gone: skip its work
                continue
            if now > job.deadline:
                message = f"{self.name} did not answer within {job.timeout_s * 1000:.0f} ms"
                job.future.set_exception(
                    Timeout(message, hint="retry, or deploy with a larger timeout_ms")
                )
                continue
            batch.append(job)
            rows += job.rows
        return batch

    def _run_next_batch(self) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        if (
            self._arrivals != self._arrivals_seen
            and self.queued_rows < self.max_batch_size
            and now < self._fill_until
        ):
            # The last loop turn read more requests for this batch: give the next turn the
            # chance to read the rest of the burst before the model runs.
            self._arrivals_seen = self._arrivals
            loop.call_soon(self._run_next_batch)
            return
        if self._resident is not None and not self._loaded_now and not self._resident():
            self._load_off_loop(loop)
            return
        # Just loaded: run even if the model was evicted again meanwhile (a model larger than
        # the budget is, as soon as its load's pin is released); the batch's pin loads it.
        self._loaded_now = False
        batch = self._take_batch(now)
        if self._waiting:  # the batch made room in the queue
            self._admit_waiting()
        if batch:
            started = time.perf_counter()
            results = self._run(batch)
            done = time.perf_counter()
            call_s = self._call_s = done - started
            log_s = 0.0
            if self._on_batch is not None:
                self._on_batch(batch, results)
                log_s = time.perf_counter() - done
            for job, result in zip(batch, results, strict=True):
                meta = job.meta
                if meta is not None:  # its stages, for the prediction core (core.py)
                    meta.batched, meta.predict_s, meta.log_s = started, call_s, log_s
                if job.future.done():
                    continue
                if isinstance(result, BaseException):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)
        if self._queue:
            # Yield first: answered requests respond and the loop reads what arrived meanwhile,
            # so whatever has queued by the next turn is the next batch.
            self._arrivals_seen = self._arrivals
            self._fill_until = loop.time() + min(self._call_s, MAX_FILL_S)
            loop.call_soon(self._run_next_batch)
        else:
            self._scheduled = False

    def _load_off_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Load the model on a thread, then run the waiting batch (``_scheduled`` stays set
        meanwhile, so requests queue behind the load instead of starting another)."""
        assert self._load is not None
        self._load_started = time.perf_counter()
        self._loading = True
        loop.run_in_executor(None, self._load).add_done_callback(self._loaded)
        self._arm_expiry(loop)

    def _arm_expiry(self, loop: asyncio.AbstractEventLoop) -> None:
        # A load that hangs (or outlasts the requests' timeout) must not hold them past their
        # deadline: each is answered 503 at its deadline while the load goes on.
        jobs = [*self._queue, *self._waiting]
        self._expiry = loop.call_at(min(j.deadline for j in jobs), self._expire) if jobs else None

    def _expire(self) -> None:
        """Answer the requests whose deadline passed while their model was loading."""
        loop = self._loop
        assert loop is not None
        now = loop.time()
        loading_s = time.perf_counter() - self._load_started
        for jobs in (self._queue, self._waiting):
            kept = [j for j in jobs if j.deadline > now and not j.future.done()]
            for job in jobs:
                if job.deadline <= now and not job.future.done():
                    job.future.set_exception(self._still_loading(job, loading_s))
            if jobs is self._queue:
                self.queued_rows = sum(j.rows for j in kept)
            jobs.clear()
            jobs.extend(kept)
        self._arm_expiry(loop)

    def _still_loading(self, job: Job, loading_s: float) -> Unavailable:
        return Unavailable(
            f"model {self.name} is still loading: its load has taken {loading_s:.1f} s so far, "
            f"longer than this request's timeout of {job.timeout_s * 1000:.0f} ms",
            hint="retry in a moment (the load goes on, and requests are answered once it is "
            "done); if it never ends, see the server log and `cloche models loaded --all`; a "
            "model that loads this slowly needs a larger --timeout-ms at deploy",
        )

    def _loaded(self, done: asyncio.Future[object]) -> None:
        self._loading = False
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        error = done.exception()
        if error is None:
            load_s = time.perf_counter() - self._load_started
            for job in self._queue:  # their load stage (Server-Timing, spans)
                if job.meta is not None:
                    job.meta.load_s = load_s
            self._loaded_now = True
            self._run_next_batch()
            return
        # The load failed (the cache names the model and why): the requests waiting for it
        # are answered with that; later ones retry the load.
        if not isinstance(error, ClocheError):
            error = PredictFailed(f"{self.name} could not load its model: {error}")
        while self._queue:
            job = self._queue.popleft()
            self.queued_rows -= job.rows
            if not job.future.done():
                job.future.set_exception(error)
        self._admit_waiting()
        if self._queue:
            assert self._loop is not None
            self._loop.call_soon(self._run_next_batch)
        else:
            self._scheduled = False

    def _run(self, batch: list[Job]) -> list[Result]:
        first = batch[0]
        if len(batch) == 1:
            wanted = first.outputs
        else:
            wanted = frozenset().union(*(job.outputs for job in batch))
        stacked = first.inputs if len(batch) == 1 else np.concatenate([j.inputs for j in batch])
        try:
            outputs = self._call(stacked, wanted)
        except ClocheError as exc:
            if len(batch) == 1:
                return [_blame_input(exc, stacked, self.name)]
            # One request's rows may be what the model chokes on: run each alone so only
            # that request fails.
            return [self._run([job])[0] for job in batch]
        if len(batch) == 1 and first.outputs.issuperset(outputs):
            return [outputs]
        results: list[Result] = []
        start = 0
        items = list(outputs.items())
        for job in batch:
            stop = start + job.rows
            results.append({k: v[start:stop] for k, v in items if k in job.outputs})
            start = stop
        return results

    def _call(self, inputs: np.ndarray, wanted: frozenset[str]) -> dict[str, np.ndarray]:
        try:
            return self._predict(inputs, wanted)
        except ClocheError:
            raise
        except Exception as exc:
            raise PredictFailed(f"{self.name} failed to predict: {exc}") from exc


def _blame_input(error: ClocheError, inputs: np.ndarray, name: str) -> ClocheError:
    """A model that fails on missing or non-finite values was sent bad input: a 4xx, not a 500."""
    if isinstance(error, PredictFailed) and _has_missing(inputs):
        return InvalidInput(
            f"{name} cannot take missing or non-finite values (null, NaN, inf): {error.message}",
            hint="send a finite number for every feature, or deploy a model that handles "
            "missing values (e.g. HistGradientBoosting)",
        )
    return error


def _has_missing(inputs: np.ndarray) -> bool:
    if inputs.dtype.kind in "fc":
        return not bool(np.isfinite(inputs).all())
    if inputs.dtype.kind == "O":
        return any(v is None or (isinstance(v, float) and not np.isfinite(v)) for v in inputs.flat)
    return False
