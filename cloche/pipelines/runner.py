"""Running a pipeline in-process: steps in dependency order, branches decided when reached,
loops per item, exit steps always; a run started again skips what already finished."""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from cloche.config import Settings
from cloche.errors import ClocheError, MissingDependency, Unavailable
from cloche.pipelines import executors, records
from cloche.pipelines.component import Component
from cloche.pipelines.entities import DONE_STEP_STATES, PipelineRun, StepRecord
from cloche.pipelines.executors import check_executor
from cloche.pipelines.graph import Branch, Condition, TaskSpec
from cloche.pipelines.outcome import describe
from cloche.pipelines.pipeline import Pipeline
from cloche.pipelines.step import RunState, run_step
from cloche.pipelines.values import run_params
from cloche.store.private import private_dir
from cloche.store.store import Store
from cloche.store.tables import utcnow

NOT_TAKEN = "not run: its branch was not taken"
# Steps of one run at a time: enough for I/O-bound steps (service calls) on a small machine.
DEFAULT_WORKERS = 4
OPERATORS = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def start_run(
    store: Store,
    pipeline: Pipeline,
    params: dict[str, Any],
    *,
    actor: str,
    executor: str = "inprocess",
) -> PipelineRun:
    """Record a new run (parameters and executor checked) without running it."""
    check_executor(executor)
    checked = run_params(pipeline.graph, params)
    return records.create_run(store, pipeline.graph, checked, executor=executor, actor=actor)


def execute_run(
    store: Store,
    run_id: str,
    components: dict[str, Component],
    *,
    root: Path,
    use_cache: bool = True,
    workers: int = DEFAULT_WORKERS,
    ray_address: str | None = None,
) -> PipelineRun:
    """Run (or resume) ``run_id``: up to ``workers`` independent steps at a time; steps already
    succeeded or cached are not run again. After a failure no new step starts but exit steps.
    ``ray_address`` is the server's setting for ``executor="ray"`` runs (else a local Ray)."""
    run = records.get_run(store, run_id)
    graph = records.run_graph(store, run_id)
    state = RunState(
        store,
        run_id,
        graph,
        components,
        run.params,
        root,
        use_cache,
        executor=run.executor,
        workers=max(1, workers),
    )
    finished = _finished(run, state)
    try:
        functions = [c.python_func for c in components.values()]
        with executors.session(
            run.executor, functions, run_id=run_id, ray_address=ray_address, workers=state.workers
        ):
            records.set_run_state(store, run_id, "running")
            failed = _schedule(state, finished, state.workers)
    except (MissingDependency, Unavailable) as exc:  # before any step: nothing half-recorded
        error = describe(exc)
        records.set_run_state(store, run_id, "failed", error=error)
        return records.get_run(store, run_id)
    error = f"step {failed[0]!r} failed" if failed else ""
    records.set_run_state(store, run_id, "failed" if failed else "succeeded", error=error)
    return records.get_run(store, run_id)


def _schedule(state: RunState, finished: set[tuple[str, int]], workers: int) -> list[str]:
    """Start each step once all its upstream steps have ended; the steps that failed, in order."""
    dependencies = state.graph.dependencies()
    pending = list(state.graph.order())
    ended: set[str] = set()
    failed: list[str] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pipeline") as pool:
        running: dict[Future[list[str]], str] = {}
        while pending or running:
            ready = [t for t in pending if dependencies[t] <= ended]
            if ready and records.run_state(state.store, state.run_id) == "cancelled":
                pending, ready = [], []  # cancel recorded them; running steps end on their own
            for task_id in ready:
                pending.remove(task_id)
                task = state.graph.task(task_id)
                if failed and task.exit_group is None:
                    _skip(state, task, -1, f"not run: step {failed[0]!r} failed")
                    ended.add(task_id)
                    continue
                if len(ready) == 1 and not running and state.executor != "inprocess":
                    # The only step that may run (a chain's): run here, saving two thread
                    # switches per step. Not in-process steps: their code would then run on
                    # this thread, where Ctrl-C and signal handlers behave otherwise.
                    failed += _guarded(state, task, finished)
                    ended.add(task_id)
                    continue
                running[pool.submit(_guarded, state, task, finished)] = task_id
            if not running:
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                failed += future.result()
                ended.add(running.pop(future))
    return failed


def _guarded(state: RunState, task: TaskSpec, finished: set[tuple[str, int]]) -> list[str]:
    try:
        return _run_task(state, task, finished)
    except ClocheError as exc:  # inputs that cannot be resolved: the step fails, recorded
        _fail(state, task, exc)
        return [task.id]


def _run_task(state: RunState, task: TaskSpec, finished: set[tuple[str, int]]) -> list[str]:
    """Run a step, or a loop's step once per item (``parallelism`` items at a time)."""
    items = [(i, item) for i, item in _items(state, task) if (task.id, i) not in finished]

    def one(iteration: int, item: Any) -> str | None:
        if not _taken(state, task, iteration, item):
            _skip(state, task, iteration, NOT_TAKEN)
            return None
        if run_step(state, task, iteration, item):
            return None
        return task.id if iteration < 0 else f"{task.id}[{iteration}]"

    if len(items) <= 1:
        outcomes = [one(i, item) for i, item in items]
    else:
        loop = next(lp for lp in state.graph.loops if lp.id == task.loop)
        width = min(len(items), loop.parallelism or state.workers)
        with ThreadPoolExecutor(max_workers=width, thread_name_prefix="pipeline-loop") as pool:
            outcomes = list(pool.map(lambda pair: one(*pair), items))
    return [f for f in outcomes if f is not None][:1]


def _items(state: RunState, task: TaskSpec) -> list[tuple[int, Any]]:
    if task.loop is None:
        return [(-1, None)]
    loop = next(lp for lp in state.graph.loops if lp.id == task.loop)
    values = state.value(loop.items, -1, None)
    if not isinstance(values, list):
        raise ClocheError(f"the loop of step {task.id!r} got {type(values).__name__}, not a list")
    return list(enumerate(values))


def _taken(state: RunState, task: TaskSpec, iteration: int, item: Any) -> bool:
    arms = {b.id: b for b in state.graph.branches}
    return all(_arm_taken(state, arms[b], iteration, item) for b in task.branches)


def _arm_taken(state: RunState, arm: Branch, iteration: int, item: Any) -> bool:
    for earlier in state.graph.branches:
        if earlier.group != arm.group or earlier.index >= arm.index or earlier.condition is None:
            continue
        if _holds(state, earlier.condition, iteration, item):
            return False
    return arm.condition is None or _holds(state, arm.condition, iteration, item)


def _holds(state: RunState, condition: Condition, iteration: int, item: Any) -> bool:
    left = state.value(condition.left, iteration, item)
    right = state.value(condition.right, iteration, item)
    try:
        return bool(OPERATORS[condition.op](left, right))
    except TypeError as exc:
        raise ClocheError(f"a condition compares values that cannot be compared: {exc}") from None


def _finished(run: PipelineRun, state: RunState) -> set[tuple[str, int]]:
    done: set[tuple[str, int]] = set()
    for key, record in run.latest().items():
        state.attempts[key] = record.attempt
        # A step skipped because another failed runs when the run is retried.
        if record.state in DONE_STEP_STATES or record.error == NOT_TAKEN:
            done.add(key)
            state.outputs[key] = record.outputs
    return done


def _skip(state: RunState, task: TaskSpec, iteration: int, why: str) -> None:
    _record(state, task, iteration, "skipped", why)


def _fail(state: RunState, task: TaskSpec, exc: ClocheError) -> None:
    _record(state, task, -1, "failed", f"{exc.code}: {exc.message}")


def _record(state: RunState, task: TaskSpec, iteration: int, status: str, why: str) -> None:
    key = (task.id, iteration)
    state.attempts[key] = state.attempts.get(key, 0) + 1
    stamp = utcnow()
    record = StepRecord(
        step=task.id,
        iteration=iteration,
        attempt=state.attempts[key],
        state=status,
        error=why,
        started_at=stamp,
        ended_at=stamp,
    )
    records.record_step(state.store, state.run_id, record, cache_key=None)


def run_pipeline(
    store: Store,
    pipeline: Pipeline,
    params: dict[str, Any],
    *,
    actor: str,
    use_cache: bool = True,
    executor: str = "inprocess",
    workers: int = DEFAULT_WORKERS,
    ray_address: str | None = None,
) -> PipelineRun:
    """Start a run and run it to the end here; artifacts go under CLOCHE_HOME/pipelines."""
    run = start_run(store, pipeline, params, actor=actor, executor=executor)
    return execute_run(
        store,
        run.id,
        pipeline.components,
        root=artifacts_root(store),
        use_cache=use_cache,
        workers=workers,
        ray_address=ray_address,
    )


def artifacts_root(store: Store) -> Path:
    # Owner-only like the rest of CLOCHE_HOME: artifacts may hold the data they were made from.
    return private_dir(private_dir(store.home / "pipelines") / "runs")


def run(
    pipeline: Pipeline,
    params: dict[str, Any] | None = None,
    *,
    executor: str = "inprocess",
    workers: int = DEFAULT_WORKERS,
    use_cache: bool = True,
    settings: Settings | None = None,
) -> PipelineRun:
    """Run ``pipeline`` here to its end and return the recorded run (``cloche pipelines run``
    from Python). The run is recorded in this machine's CLOCHE_HOME; its steps reach cloche as
    ``cloche.Client()`` does (CLOCHE_URL when set)."""
    from cloche.auth.roles import local_actor

    settings = settings or Settings()
    store = Store.open(settings)
    try:
        return run_pipeline(
            store,
            pipeline,
            dict(params or {}),
            actor=local_actor(),
            use_cache=use_cache,
            executor=executor,
            workers=workers,
            ray_address=settings.batch.ray_address,
        )
    finally:
        store.close()
