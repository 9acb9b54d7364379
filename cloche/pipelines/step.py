"""One step of a run: resolve its inputs, reuse a cached result or call it, retrying as told,
and record every attempt in the store."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloche.errors import ClocheError, StepFailed
from cloche.lineage.context import bound
from cloche.pipelines import executors, records
from cloche.pipelines.component import Component
from cloche.pipelines.entities import StepRecord
from cloche.pipelines.graph import Argument, PipelineGraph, TaskSpec
from cloche.pipelines.values import (
    Outputs,
    artifact_object,
    artifact_record,
    cache_key,
    check_returned,
    intact,
    resolve,
)
from cloche.store.store import Store
from cloche.store.tables import utcnow


@dataclass
class RunState:
    store: Store
    run_id: str
    graph: PipelineGraph
    components: dict[str, Component]
    params: dict[str, Any]
    root: Path
    use_cache: bool = True
    executor: str = "inprocess"
    workers: int = 1
    outputs: Outputs = field(default_factory=dict)
    attempts: dict[tuple[str, int], int] = field(default_factory=dict)

    def value(self, arg: Argument, iteration: int, item: Any) -> Any:
        return resolve(
            arg, params=self.params, outputs=self.outputs, iteration=iteration, item=item
        )


def run_step(state: RunState, task: TaskSpec, iteration: int, item: Any) -> bool:
    """Run (or reuse) one step for one loop item; True when it succeeded."""
    spec = state.graph.components[task.component]
    inputs = {name: state.value(arg, iteration, item) for name, arg in task.arguments.items()}
    for name, pspec in spec.params.items():
        inputs.setdefault(name, pspec.default)
    key = cache_key(spec, inputs)
    if spec.kind == "approval":  # a person's decision is never reused
        return _await_approval(state, task, iteration, inputs)
    if task.caching and state.use_cache and _reuse(state, task, iteration, inputs, key):
        return True
    attempts = 1 + task.retry.attempts
    delay = task.retry.backoff_seconds
    for _ in range(attempts):
        if _attempt(state, task, iteration, inputs, key):
            return True
        if _ < attempts - 1 and delay > 0:
            time.sleep(min(delay, task.retry.max_backoff_seconds))
            delay *= task.retry.backoff_factor
    return False


def _reuse(
    state: RunState, task: TaskSpec, iteration: int, inputs: dict[str, Any], key: str
) -> bool:
    hit = records.cached_outputs(state.store, key)
    if hit is None or not intact(hit[1]):
        return False
    stamp = utcnow()
    record = StepRecord(
        step=task.id,
        iteration=iteration,
        attempt=_next_attempt(state, task.id, iteration),
        state="cached",
        cached_from=hit[0],
        inputs=inputs,
        outputs=hit[1],
        started_at=stamp,
        ended_at=stamp,
    )
    records.record_step(state.store, state.run_id, record, cache_key=key, new=True)
    state.outputs[(task.id, iteration)] = hit[1]
    return True


def _await_approval(
    state: RunState, task: TaskSpec, iteration: int, inputs: dict[str, Any]
) -> bool:
    from cloche.pipelines.approvals import await_decision

    record = StepRecord(
        step=task.id,
        iteration=iteration,
        attempt=_next_attempt(state, task.id, iteration),
        state="waiting",
        inputs=inputs,
        started_at=utcnow(),
    )
    records.record_step(state.store, state.run_id, record, cache_key=None)
    records.set_run_state(state.store, state.run_id, "waiting")
    try:
        timeout = float(inputs.get("timeout_seconds") or 86_400.0)
        decision = await_decision(state.store, state.run_id, task.id, iteration, timeout=timeout)
    except ClocheError as exc:
        failure = {"state": "failed", "error": _describe(exc), "ended_at": utcnow()}
        records.record_step(
            state.store, state.run_id, record.model_copy(update=failure), cache_key=None
        )
        return False
    finally:
        records.set_run_state(state.store, state.run_id, "running")
    outputs = decision._asdict()
    done = {"state": "succeeded", "outputs": outputs, "ended_at": utcnow()}
    records.record_step(state.store, state.run_id, record.model_copy(update=done), cache_key=None)
    state.outputs[(task.id, iteration)] = outputs
    return True


def _attempt(
    state: RunState, task: TaskSpec, iteration: int, inputs: dict[str, Any], key: str
) -> bool:
    spec = state.graph.components[task.component]
    record = StepRecord(
        step=task.id,
        iteration=iteration,
        attempt=_next_attempt(state, task.id, iteration),
        state="running",
        inputs=inputs,
        started_at=utcnow(),
    )
    records.record_step(state.store, state.run_id, record, cache_key=None, new=True)
    folder = state.root / state.run_id / (task.id if iteration < 0 else f"{task.id}-{iteration}")
    arguments = {n: v for n, v in inputs.items() if n not in spec.inputs}
    arguments |= {n: artifact_object(n, inputs[n]) for n in spec.inputs}
    written = {
        n: artifact_object(n, {"type": t, "uri": str(folder / n)}) for n, t in spec.outputs.items()
    }
    if written:  # a step with no output artifact has nothing to keep there
        folder.mkdir(parents=True, exist_ok=True)
    label = task.id if iteration < 0 else f"{task.id}[{iteration}]"
    try:
        value, log = executors.call(
            state.executor,
            # What the step makes through the services is linked back to this run and step.
            bound(state.components[task.component].python_func, state.run_id, label),
            arguments | written,
            written,
            timeout=task.timeout_seconds,
            name=task.id,
        )
        outputs = check_returned(spec, task.id, value)
        for name, artifact in written.items():
            outputs[name] = artifact_record(artifact, spec.outputs[name], step=task.id)
    except ClocheError as exc:
        failure = {"state": "failed", "error": _describe(exc), "log": exc.details.get("log", "")}
        record = record.model_copy(update=failure | {"ended_at": utcnow()})
        records.record_step(state.store, state.run_id, record, cache_key=None)
        return False
    success = {"state": "succeeded", "outputs": outputs, "log": log}
    record = record.model_copy(update=success | {"ended_at": utcnow()})
    records.record_step(state.store, state.run_id, record, cache_key=key if task.caching else None)
    state.outputs[(task.id, iteration)] = outputs
    return True


def _next_attempt(state: RunState, step: str, iteration: int) -> int:
    state.attempts[(step, iteration)] = state.attempts.get((step, iteration), 0) + 1
    return state.attempts[(step, iteration)]


def _describe(exc: ClocheError) -> str:
    if isinstance(exc, StepFailed):
        return exc.message  # the end of the step's own traceback
    return f"{exc.code}: {exc.message}" + (f" ({exc.hint})" if exc.hint else "")
