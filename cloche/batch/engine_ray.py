"""The Ray engine: the local engine's plan, scored on a Ray cluster through Ray Data.

Ray Data streams the plan's tasks (chunk ranges of the input, not the rows themselves) through
``map_batches`` over an actor pool; each actor loads the model once, reads its chunks straight
from the input, scores them and commits each chunk's output file as the local engine does. So
the output files, the checkpoints (a chunk is done when its file exists), resume and the manifest
are the same whichever engine ran, and rows never travel through the driver. The price: the
input and the output folder must be reachable under the same path from every Ray node (a shared
filesystem, or an object-store URL for the input).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from cloche.batch import engine_local
from cloche.batch._worker import Aborted, describe, run_task
from cloche.batch.places import Places
from cloche.batch.plan import JobPlan, Task, tasks_for, utc_now
from cloche.batch.spec import JobOutcome, JobSpec, ModelSource, Progress
from cloche.batch.writer import ChunkResult, clean_unfinished, done_chunks
from cloche.errors import MissingDependency

LOCAL_OBJECT_STORE_BYTES = 256 * 2**20  # tasks and counts only: rows never enter it


def run(
    spec: JobSpec,
    model: ModelSource,
    *,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: bool = False,
    places: Places | None = None,
    address: str | None = None,
) -> JobOutcome:
    """Plan (or reload the plan of) a job, score what is not done on Ray (the cluster at
    ``address``, a server setting; else a local Ray), write the manifest."""
    ray = _import_ray()
    plan = engine_local.prepare(spec, model, resume=resume, places=places)
    started = utc_now()
    with engine_local.job_lock(plan.output_dir):
        done = done_chunks(plan)
        clean_unfinished(plan, done)
        monitor = engine_local.Monitor(plan, spec, done, progress, should_stop)
        tasks = tasks_for(plan, done)
        monitor.report()
        if tasks:
            try:
                _score_on_ray(ray, tasks, plan, spec, model, monitor, address)
            except Exception as exc:  # the cluster is unreachable, an actor cannot load
                monitor.fail(f"the Ray engine failed: {describe(exc)}")
        return engine_local.finish(plan, spec, model, monitor, started)


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise MissingDependency(
            "--engine ray needs Ray Data, which is not installed",
            hint="pip install 'cloche[ray]', or run with --engine local",
        ) from exc
    return ray


def _score_on_ray(
    ray: Any,
    tasks: list[Task],
    plan: JobPlan,
    spec: JobSpec,
    model: ModelSource,
    monitor: engine_local.Monitor,
    address: str | None,
) -> None:
    started_here = _connect(ray, spec, address)
    try:
        size = max(1, min(_pool_size(ray, spec), len(tasks)))
        items = ray.data.from_items([{"task": t.id} for t in tasks], override_num_blocks=len(tasks))
        scored = items.map_batches(
            ChunkScorer,
            fn_constructor_kwargs={
                "plan": plan,
                "spec": spec,
                "model": model,
                "tasks": {t.id: t for t in tasks},
            },
            batch_size=1,
            batch_format="numpy",
            concurrency=size,
            num_cpus=1,
        )
        for row in scored.iter_rows():
            monitor.chunk_done(ChunkResult(int(row["index"]), int(row["rows"]), int(row["errors"])))
            if monitor.poll():
                break  # leaving the iterator stops the stream; committed chunks stay done
    finally:
        if started_here:
            ray.shutdown()


def _connect(ray: Any, spec: JobSpec, address: str | None) -> bool:
    """Join the cluster at ``address``, or start a local Ray; True if started here."""
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False)
        return True
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    ray.init(
        num_cpus=spec.workers or cores or 1,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=LOCAL_OBJECT_STORE_BYTES,
    )
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the CLI draws its own, from the job's progress
    return True


def _pool_size(ray: Any, spec: JobSpec) -> int:
    return spec.workers or int(ray.cluster_resources().get("CPU", 1))


class ChunkScorer:
    """One Ray actor: loads the model once, then scores whole tasks, one per call."""

    def __init__(
        self, plan: JobPlan, spec: JobSpec, model: ModelSource, tasks: dict[int, Task]
    ) -> None:
        from cloche.batch.scoring import Scorer

        self.plan, self.tasks = plan, tasks
        self.scorer = Scorer(model, spec, columns=plan.columns)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results: list[ChunkResult] = []
        for task_id in batch["task"]:
            try:
                run_task(
                    self.tasks[int(task_id)],
                    self.plan,
                    self.scorer,
                    report=results.append,
                    should_abort=lambda: False,
                )
            except Aborted:  # never raised without an abort signal; kept for the contract
                break
        return {
            "index": np.array([r.index for r in results], dtype=np.int64),
            "rows": np.array([r.rows for r in results], dtype=np.int64),
            "errors": np.array([r.errors for r in results], dtype=np.int64),
        }
