"""Running a batch job's tasks: in a worker process (the pool) or in the calling process.

``run_task`` scores one task's chunks and commits each through ``ChunkOutput``. ``WorkerPool``
starts ``spawn`` processes that each load the model once, take tasks from a queue and report every
committed chunk on an event queue; the parent never imports the ML framework. A worker whose
parent dies (``kill -9``) notices within a fifth of a second and exits, leaving at most temp files.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from cloche.batch import sources
from cloche.batch.plan import Chunk, JobPlan, Task
from cloche.batch.spec import JobSpec, ModelSource
from cloche.batch.writer import ChunkOutput, ChunkResult
from cloche.errors import ClocheError, InvalidDataset

if TYPE_CHECKING:  # the scorer imports the framework's runtime, which the parent never needs
    from cloche.batch.scoring import Scorer

MAX_BATCH_ROWS = 16_384  # rows per model call: memory follows this, not the chunk or the file
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


class Aborted(Exception):
    """The job is stopping (cancelled or failed elsewhere): the current chunk is dropped."""


def run_task(
    task: Task,
    plan: JobPlan,
    scorer: Scorer,
    *,
    report: Callable[[ChunkResult], None],
    should_abort: Callable[[], bool],
) -> None:
    """Score and commit the task's chunks, calling ``report`` after each commit."""
    file = plan.files[task.file]
    batch_rows = min(int(plan.spec["chunk_rows"]), MAX_BATCH_ROWS)
    columns = plan.columns.needed
    if plan.input_format == "parquet":
        for index in task.chunks:
            chunk = plan.chunks[index]
            batches = sources.iter_parquet(file, chunk.start, chunk.stop, columns, batch_rows)
            report(_score_chunk(plan, chunk, batches, scorer, should_abort))
        return
    schema = plan.columns.read_schema
    assert schema is not None  # set by check_input for every plan
    cursor = _Cursor(sources.iter_text(file.path, plan.input_format, schema), file.path)
    for index in task.chunks:
        chunk = plan.chunks[index]
        cursor.skip_to(chunk.start)  # done chunks before this one are read, not scored
        batches = cursor.take(chunk.rows, batch_rows)
        report(_score_chunk(plan, chunk, batches, scorer, should_abort))


def _score_chunk(
    plan: JobPlan,
    chunk: Chunk,
    batches: Iterator[pa.RecordBatch | pa.Table],
    scorer: Scorer,
    should_abort: Callable[[], bool],
) -> ChunkResult:
    output = ChunkOutput(plan, chunk.index)
    try:
        row = chunk.first_row
        for batch in batches:
            if should_abort():
                raise Aborted
            output.write(scorer.score(batch, row), batch.num_rows)
            row += batch.num_rows
        if row != chunk.first_row + chunk.rows:
            raise _changed(plan.files[chunk.file].path)
        return output.commit()
    except BaseException:
        output.discard()
        raise


class _Cursor:
    """Reads a stream of tables by row count, cutting them at chunk boundaries."""

    def __init__(self, tables: Iterator[pa.Table], path: str) -> None:
        self._tables = tables
        self._path = path
        self._held: pa.Table | None = None
        self.position = 0

    def _next(self) -> pa.Table:
        table, self._held = self._held, None
        if table is None:
            table = next(self._tables, None)
        if table is None:
            raise _changed(self._path)
        return table

    def _consume(self, limit: int) -> pa.Table:
        table = self._next()
        if table.num_rows > limit:
            self._held = table.slice(limit)
            table = table.slice(0, limit)
        self.position += table.num_rows
        return table

    def skip_to(self, row: int) -> None:
        while self.position < row:
            self._consume(row - self.position)

    def take(self, rows: int, batch_rows: int) -> Iterator[pa.Table]:
        end = self.position + rows
        while self.position < end:
            yield self._consume(min(end - self.position, batch_rows))


def _changed(path: str) -> InvalidDataset:
    return InvalidDataset(
        f"{path} has fewer rows than when the job was planned",
        hint="the input changed during the job; start it again without --resume",
    )


@dataclass(frozen=True)
class WorkerInit:
    model: ModelSource
    spec: JobSpec
    plan: JobPlan
    parent_pid: int


def worker_main(
    init: WorkerInit, tasks: Any, events: Any, stop: Any, holding: Any, slot: int
) -> None:
    """A worker process: load the model once, then run tasks until told to stop.

    ``holding[slot]`` is the task this worker is on (-1: none), written before it scores in
    shared memory, not sent as an event: a killed worker's queue thread may never send its last
    events, and the parent must still say which file the dead worker was scoring."""
    # Ctrl-C reaches the whole process group; the parent alone decides, and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent(init.parent_pid)
    if init.spec.workers != 1:
        pa.set_cpu_count(1)  # the pool is the parallelism; Arrow threads would oversubscribe
    try:
        from cloche.batch.scoring import Scorer  # imports the framework: in the worker only

        scorer = Scorer(init.model, init.spec, columns=init.plan.columns)
    except Exception as exc:
        events.put(("init_failed", os.getpid(), describe(exc)))
        return
    while (task := tasks.get()) is not None:
        if stop.is_set():
            events.put(("skipped", task.id))
            continue
        holding[slot] = task.id
        try:
            run_task(
                task,
                init.plan,
                scorer,
                report=lambda result: events.put(("chunk", result)),
                should_abort=stop.is_set,
            )
            events.put(("done", task.id))
        except Aborted:
            events.put(("aborted", task.id))
        except Exception as exc:
            events.put(("failed", task.id, describe(exc)))
        holding[slot] = -1


def describe(exc: BaseException) -> str:
    """An error as the job's message: cloche errors as they are, others with their type."""
    if isinstance(exc, ClocheError):
        return exc.message + (f" ({exc.hint})" if exc.hint else "")
    return f"{type(exc).__name__}: {exc}"[:1000]


def _exit_with_parent(parent: int) -> None:
    """Exit when the parent dies: its queues would never be read again, nor its tasks wanted."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(3)  # no cleanup: the queues' feeder threads would wait for a dead reader

    threading.Thread(target=watch, name="cloche-parent-watch", daemon=True).start()


class WorkerPool:
    """``size`` spawned worker processes fed through one task queue."""

    def __init__(self, size: int, init: WorkerInit) -> None:
        ctx = mp.get_context("spawn")  # no fork: the parent may hold threads and sockets
        self.tasks: Any = ctx.Queue()
        self.events: Any = ctx.Queue()
        self.stop = ctx.Event()
        self.holding: Any = ctx.Array("q", [-1] * size, lock=False)
        args = (init, self.tasks, self.events, self.stop, self.holding)
        self.processes: list[mp.process.BaseProcess] = [
            ctx.Process(target=worker_main, args=(*args, i), name=f"cloche-batch-{i}", daemon=True)
            for i in range(size)
        ]
        with _thread_limits(size > 1):
            for process in self.processes:
                process.start()

    def next_event(self, timeout: float) -> tuple[Any, ...] | None:
        try:
            return tuple(self.events.get(timeout=timeout))
        except queue.Empty:
            return None

    def dead(self) -> list[mp.process.BaseProcess]:
        return [p for p in self.processes if p.exitcode is not None]

    def held_by(self, process: mp.process.BaseProcess) -> int | None:
        """The task ``process`` was on when it last wrote its slot, if any."""
        task = int(self.holding[self.processes.index(process)])
        return task if task >= 0 else None

    def close(self, *, abort: bool, grace_s: float = 30.0) -> list[tuple[Any, ...]]:
        """Stop the workers (after their current batch if ``abort``); the events left unread."""
        if abort:
            self.stop.set()
        for _ in self.processes:
            self.tasks.put(None)
        left: list[tuple[Any, ...]] = []
        deadline = time.monotonic() + grace_s
        while any(p.is_alive() for p in self.processes) and time.monotonic() < deadline:
            # Read while waiting: a worker cannot exit before its queued events are read.
            if (event := self.next_event(0.05)) is not None:
                left.append(event)
        for process in self.processes:
            if process.is_alive():
                process.kill()
            process.join(5)
        while (event := self.next_event(0.01)) is not None:
            left.append(event)
        self.tasks.cancel_join_thread()  # tasks nobody will take: do not wait to flush them
        self.tasks.close()
        self.events.close()
        return left


@contextlib.contextmanager
def _thread_limits(single: bool) -> Iterator[None]:
    """One thread per worker for BLAS/OpenMP: set before the children start, as those libraries
    read the variables when they load. Variables the user set are kept.

    Also two malloc arenas per worker: glibc's default (eight per core) keeps freed batch memory
    in reserve per arena; with it and 16k-row batches, peak RSS fell by a tenth (bench/batch.py).
    """
    wanted = {v: "1" for v in THREAD_VARIABLES if single} | {"MALLOC_ARENA_MAX": "2"}
    added = [name for name in wanted if name not in os.environ]
    for name in added:
        os.environ[name] = wanted[name]
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)
