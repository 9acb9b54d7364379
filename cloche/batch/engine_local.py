"""The local batch engine: plan a job, then score its chunks in worker processes on this machine.

``prepare`` does every check that can fail before scoring (input, row counts, columns, output
folder) and saves the plan; ``execute`` scores the chunks not yet done and writes the manifest.
With ``workers`` 1 the model runs in the calling process (no start-up cost, nothing to
coordinate); otherwise in ``workers`` spawned processes (0: one per core) while this process only
hands out tasks and counts, and never imports the ML framework. Inputs in ``memory://`` exist only
in this process, so they are always scored here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cloche.batch import schema, sources
from cloche.batch._worker import Aborted, WorkerInit, WorkerPool, describe, run_task
from cloche.batch.manifest import RunSummary, write_manifest
from cloche.batch.places import Places
from cloche.batch.plan import (
    JobPlan,
    Task,
    build_chunks,
    check_spec,
    job_dir,
    load_plan,
    output_folder,
    output_to_replace,
    resumable_plan,
    save_plan,
    tasks_for,
    utc_now,
)
from cloche.batch.spec import FinalState, JobOutcome, JobSpec, ModelSource, Progress
from cloche.batch.writer import ChunkResult, clean_unfinished, done_chunks, error_rows_on_disk
from cloche.errors import InvalidDataset, JobStateConflict
from cloche.signatures import Signature

STOP_POLL_S = 0.5  # should_stop may query a database: ask at most this often between chunks


def prepare(
    spec: JobSpec, model: ModelSource, *, resume: bool = False, places: Places | None = None
) -> JobPlan:
    """Check the input, the columns and the output folder, and save the job's plan.

    With ``places`` (a job the server runs for someone), the output and every planned input
    file must lie where they allow, checked now that the files a pattern matches are known.
    """
    check_spec(spec)
    if places is not None:
        places.check_output(spec.output)
    folder = output_folder(spec.output)
    if resume:
        if places is not None:  # before the saved plan's files are read to compare them
            places.check_files(f.path for f in load_plan(folder).files)
        return resumable_plan(spec, model, folder)
    own_files = output_to_replace(folder, spec.overwrite)
    fmt, paths = sources.resolve_inputs(spec.input, spec.input_format)
    if places is not None:
        places.check_files(paths)
    files = [sources.describe(p, fmt) for p in paths]
    if not any(f.rows for f in files):
        raise InvalidDataset(f"the input {spec.input} has no rows", hint="give data to score")
    samples = [(f.path, *sources.read_sample(f, fmt)) for f in files if f.rows]
    columns = schema.check_input(samples, fmt, Signature.from_dict(model.signature), spec)
    if own_files:  # only now: a job that fails its checks leaves the old output alone
        with job_lock(folder):  # and never while a run is writing there
            for path in own_files:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    plan = JobPlan(
        output_dir=str(folder),
        input_format=fmt,
        output_format=spec.output_format,
        files=files,
        chunks=build_chunks(files, spec.chunk_rows),
        columns=columns,
        model_ref=model.ref,
        model_sha256=model.sha256,
        framework=model.framework,
        spec=spec.to_dict(),
    )
    save_plan(plan)
    return plan


def execute(
    plan: JobPlan,
    spec: JobSpec,
    model: ModelSource,
    *,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> JobOutcome:
    """Score the chunks not yet done, then write the manifest; never raises for bad data."""
    started = utc_now()
    with job_lock(plan.output_dir):
        done = done_chunks(plan)
        clean_unfinished(plan, done)
        monitor = Monitor(plan, spec, done, progress, should_stop)
        tasks = tasks_for(plan, done)
        try:
            monitor.report()
            if tasks and _in_process(plan, spec):
                _run_here(tasks, plan, spec, model, monitor)
            elif tasks:
                _run_pool(tasks, plan, spec, model, monitor)
        except Exception as exc:  # a model that will not load, an unreadable file: job failed
            monitor.fail(describe(exc))
        return finish(plan, spec, model, monitor, started)


@contextlib.contextmanager
def job_lock(output_dir: str | Path) -> Iterator[None]:
    """One run per output folder; the OS drops the lock when its process dies, even by kill -9."""
    import fcntl

    path = job_dir(output_dir) / "lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JobStateConflict(
                f"another run of this batch job is writing to {output_dir}",
                hint="wait for it to finish, or cancel it",
            ) from None
        yield


def _in_process(plan: JobPlan, spec: JobSpec) -> bool:
    return spec.workers == 1 or any(f.path.startswith("memory://") for f in plan.files)


class Monitor:
    """Counts done chunks, reports progress, and decides when the job must stop."""

    def __init__(
        self,
        plan: JobPlan,
        spec: JobSpec,
        done: set[int],
        progress: Callable[[Progress], None] | None,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        self.plan, self.spec = plan, spec
        self.chunks = {i: (plan.chunks[i].rows, error_rows_on_disk(plan, i)) for i in done}
        rows = sum(r for r, _ in self.chunks.values())
        self.progress = Progress(
            plan.rows_total, plan.chunks_total, rows, len(done), rows_at_start=rows
        )
        self.progress.error_rows = sum(e for _, e in self.chunks.values())
        self._callback, self._should_stop = progress, should_stop
        self.failure: str | None = None
        self.cancelled = False
        self._polled = 0.0

    @property
    def stopping(self) -> bool:
        return self.failure is not None or self.cancelled

    def report(self) -> None:
        if self._callback is not None:
            self._callback(self.progress)

    def chunk_done(self, result: ChunkResult) -> None:
        if result.index in self.chunks:
            return  # reported twice (drained after a stop): count it once
        self.chunks[result.index] = (result.rows, result.errors)
        p = self.progress
        p.rows_done += result.rows
        p.error_rows += result.errors
        p.chunks_done += 1
        self.report()
        limit = self.spec.max_error_rate
        if p.rows_done >= min(1000, p.rows_total) and p.error_rows > limit * p.rows_done:
            self.fail(
                f"{p.error_rows} of {p.rows_done} rows could not be scored "
                f"({p.error_rows / p.rows_done:.2%}), more than the maximum error rate of "
                f"{limit:.2%}; the rows and reasons are in {self.plan.output_dir}/errors-*.jsonl"
            )
        self.poll(force=True)

    def poll(self, *, force: bool = False) -> bool:
        """Ask should_stop (at most every STOP_POLL_S unless forced); True once stopping."""
        now = time.monotonic()
        if self._should_stop is not None and (force or now - self._polled >= STOP_POLL_S):
            self._polled = now
            self.cancelled = self.cancelled or bool(self._should_stop())
        return self.stopping

    def fail(self, message: str) -> None:
        self.failure = self.failure or message


def _run_here(
    tasks: list[Task], plan: JobPlan, spec: JobSpec, model: ModelSource, monitor: Monitor
) -> None:
    from cloche.batch.scoring import Scorer  # imports the framework into this process

    scorer = Scorer(model, spec, columns=plan.columns)
    for task in tasks:
        if monitor.poll():
            return
        try:
            run_task(task, plan, scorer, report=monitor.chunk_done, should_abort=monitor.poll)
        except Aborted:
            return


def _run_pool(
    tasks: list[Task], plan: JobPlan, spec: JobSpec, model: ModelSource, monitor: Monitor
) -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    size = min(spec.workers or cores or 1, len(tasks))
    pool = WorkerPool(size, WorkerInit(model, spec, plan, os.getpid()))
    run = _PoolRun(plan, monitor, {t.id: t for t in tasks})
    todo = deque(tasks)
    try:
        while (todo or run.running) and not monitor.stopping:
            while todo and len(run.running) < 2 * size:  # a few queued, so no worker waits
                task = todo.popleft()
                run.running[task.id] = task
                pool.tasks.put(task)
            event = pool.next_event(0.2)
            if event is not None:
                run.handle(event)
            monitor.poll()
            if pool.dead() and not monitor.stopping:
                run.worker_died(pool)
    finally:
        for event in pool.close(abort=monitor.stopping or bool(todo or run.running)):
            run.handle(event)


class _PoolRun:
    """The parent's view of the pool: which tasks are out, and what each event means."""

    def __init__(self, plan: JobPlan, monitor: Monitor, tasks: dict[int, Task]) -> None:
        self.plan, self.monitor, self.tasks = plan, monitor, tasks
        self.running: dict[int, Task] = {}

    def handle(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "chunk":
            self.monitor.chunk_done(event[1])
        elif kind in ("done", "aborted", "skipped"):
            self.running.pop(event[1], None)
        elif kind == "failed":
            self.running.pop(event[1], None)
            path, message = self._file(event[1]), event[2]
            self.monitor.fail(message if path in message else f"scoring {path} failed: {message}")
        elif kind == "init_failed":
            self.monitor.fail(f"the model could not be loaded: {event[2]}")

    def worker_died(self, pool: WorkerPool) -> None:
        # Its last events may still be queued, and they say more than an exit code.
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline and (event := pool.next_event(0.2)) is not None:
            self.handle(event)
        if self.monitor.stopping:
            return
        process = pool.dead()[0]
        task = pool.held_by(process)
        where = f" while scoring {self._file(task)}" if task in self.running else ""
        self.monitor.fail(f"a worker process exited unexpectedly (code {process.exitcode}){where}")

    def _file(self, task_id: int | None) -> str:
        task = self.tasks.get(task_id) if task_id is not None else None
        return self.plan.files[task.file].path if task is not None else "the input"


def finish(
    plan: JobPlan, spec: JobSpec, model: ModelSource, monitor: Monitor, started: str
) -> JobOutcome:
    """Decide how the run ended, from the chunks on disk, and write the manifest."""
    chunks = dict(monitor.chunks)
    for index in done_chunks(plan) - set(chunks):  # committed by a worker that died unheard
        chunks[index] = (plan.chunks[index].rows, error_rows_on_disk(plan, index))
    rows, errors = sum(r for r, _ in chunks.values()), sum(e for _, e in chunks.values())
    state, message = _ending(plan, monitor, len(chunks), errors)
    manifest = write_manifest(plan, spec, model, RunSummary(state, message, started, chunks))
    folder = Path(plan.output_dir)
    return JobOutcome(
        state=state,
        rows_total=plan.rows_total,
        rows_scored=rows - errors,
        error_rows=errors,
        output_files=[str(folder / plan.prediction_name(i)) for i in sorted(chunks)],
        manifest_path=str(manifest),
        message=message,
    )


def _ending(plan: JobPlan, monitor: Monitor, done: int, errors: int) -> tuple[FinalState, str]:
    left = plan.chunks_total - done
    if monitor.failure is not None:
        return "failed", monitor.failure
    if left and monitor.cancelled:
        return "cancelled", f"cancelled with {left} of {done + left} chunks left; resume to finish"
    if left:
        return "failed", f"{left} chunks were not scored"
    if errors:
        return "partially_succeeded", (
            f"{errors} of {plan.rows_total} rows could not be scored; the rows and reasons are "
            f"in {plan.output_dir}/errors-*.jsonl"
        )
    return "succeeded", f"scored {plan.rows_total} rows into {plan.chunks_total} files"
