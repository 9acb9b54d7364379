"""Registered pipelines and their runs as the pipelines service leaves them in the store.

Each run stores its pipeline's real graph (bench/_pipelines.py and the continuous-rollout
example) and one step record per attempt, written in the shapes ``records.record_step`` writes:
steps in dependency order, each starting when its upstream steps ended; loop steps once per
item; arms not taken ``skipped`` with the runner's reason; some steps ``cached`` from an earlier
run, some retried. A run's state decides where its records stop: a failed run's later steps are
skipped (its exit handler still runs), a running run has one step running, a waiting run waits
at an approval, a queued run has no steps yet.
"""

from __future__ import annotations

import random
import runpy
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from _pipelines import PIPELINES

from cloche.pipelines.graph import PipelineGraph, TaskSpec
from cloche.pipelines.runner import NOT_TAKEN
from cloche.pipelines.values import run_params

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "pipelines" / "continuous_rollout.py"
RUN_STATES = ["succeeded"] * 6 + ["failed", "cancelled", "running", "waiting", "queued"]
Graphs = dict[str, tuple[PipelineGraph, str, str]]  # name -> graph, source, file name


def graphs() -> Graphs:
    """Every seeded pipeline's graph with the source file that defines it."""
    found: Graphs = {}
    here = Path(__file__).with_name("_pipelines.py")
    for name, pipeline in PIPELINES.items():
        found[name] = (pipeline.graph, here.read_text(), here.name)
    rollout = runpy.run_path(str(EXAMPLE))["continuous_rollout"]
    found[rollout.name] = (rollout.graph, EXAMPLE.read_text(), EXAMPLE.name)
    return found


def registered(graphs: Graphs, now: datetime) -> list[dict[str, Any]]:
    """Rows of the pipelines table: three versions of each (the same graph, new sources)."""
    return [
        {"name": name, "version": v, "source": f"{source}\n# v{v}\n", "file_name": file_name,
         "source_hash": graph.source_hash if v == 3 else f"{v:064x}",
         "graph": graph.model_dump(mode="json"), "created_at": now - timedelta(days=40 - v),
         "created_by": "bench"}
        for name, (graph, source, file_name) in graphs.items()
        for v in (1, 2, 3)
    ]  # fmt: skip


# The first runs, whose pages bench/console.py times: the largest graph done, an approval
# waiting after a loop, a run under way.
FIXED = [("nightly-score", "succeeded"), ("retrain", "waiting"), ("continuous-rollout", "running")]


def run(
    index: int, key: str, rng: random.Random, created: datetime, graphs: Graphs
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A run row and its step rows (``run_id`` filled in)."""
    state = rng.choice(RUN_STATES)
    names = sorted(graphs)
    if state == "waiting":  # only a pipeline with an approval step waits
        names = [n for n in names if _gates(graphs[n][0])]
    name = rng.choice(names)
    if index < len(FIXED):
        name, state = FIXED[index]
    graph = graphs[name][0]
    run_id = f"pr_{key}"
    stored, _, _, params = _shape(graph)
    steps = [] if state == "queued" else _Steps(rng, graph, params, state, created).walk()
    ends = [s["ended_at"] for s in steps if s["ended_at"] is not None]
    row = {
        "id": run_id, "pipeline": name, "source_hash": graph.source_hash,
        "graph": stored, "params": params, "state": state,
        "executor": "process", "error": "step failed" if state == "failed" else "",
        "created_at": created, "started_at": None if state == "queued" else created,
        "ended_at": max(ends, default=created) if state in ("succeeded", "failed", "cancelled")
        else None,
        "created_by": "bench", "pipeline_version": 3,
        "trigger": f"schedule:sch_{rng.randrange(20):04d}" if rng.random() < 0.3 else None,
    }  # fmt: skip
    return row, [s | {"run_id": run_id} for s in steps]


Shape = tuple[dict[str, Any], list[str], dict[str, set[str]], dict[str, Any]]
_SHAPES: dict[str, Shape] = {}


def _shape(graph: PipelineGraph) -> Shape:
    """What every run of ``graph`` shares: its JSON, step order, dependencies and parameters
    (worked out once per pipeline: 10,000 runs share five graphs)."""
    if graph.name not in _SHAPES:
        shape = (graph.model_dump(mode="json"), graph.order(), graph.dependencies())
        _SHAPES[graph.name] = (*shape, run_params(graph, {}))
    return _SHAPES[graph.name]


def _gates(graph: PipelineGraph) -> list[str]:
    return [t.id for t in graph.tasks if graph.components[t.component].kind == "approval"]


class _Steps:
    """One run's step records, walked in the runner's order."""

    def __init__(
        self,
        rng: random.Random,
        graph: PipelineGraph,
        params: dict[str, Any],
        state: str,
        created: datetime,
    ) -> None:
        self.rng, self.graph, self.params, self.state = rng, graph, params, state
        _, self.order, self.deps, _ = _shape(graph)
        # Where the run stops: the approval it waits at, or the step running, failing, cancelled.
        gates = _gates(graph)
        stop = rng.choice(gates) if state == "waiting" else rng.choice(self.order[1:])
        self.stop = None if state == "succeeded" else stop
        self.taken = {b.group: 0 if rng.random() < 0.8 else 1 for b in graph.branches}
        self.ended: dict[str, datetime] = {}
        self.start = created + timedelta(seconds=rng.uniform(0.5, 5))

    def walk(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        failed = ""
        for task_id in self.order:
            task = self.graph.task(task_id)
            began = max((self.ended[u] for u in self.deps[task_id]), default=self.start)
            if failed and task.exit_group is None:
                rows.append(
                    self._record(task, -1, "skipped", began, 0, f"not run: step {failed!r} failed")
                )
                self.ended[task_id] = began
                continue
            if task_id == self.stop and self.state != "failed":
                rows += self._stopped(task, began)
                break
            rows += self._task(task, began)
            if task_id == self.stop:
                rows[-1] |= {"state": "failed", "outputs": {}, "error": "StepFailed: ValueError: "
                             "column 'churned' is missing from holdout.parquet"}  # fmt: skip
                failed = task_id
        return rows

    def _stopped(self, task: TaskSpec, began: datetime) -> list[dict[str, Any]]:
        state = {"waiting": "waiting", "running": "running"}.get(self.state, "cancelled")
        record = self._record(task, -1, state, began, 0, "")
        record["ended_at"] = None if state != "cancelled" else began
        return [record]

    def _task(self, task: TaskSpec, began: datetime) -> list[dict[str, Any]]:
        rows = []
        items = self._items(task)
        for iteration in items:
            if not self._is_taken(task):
                rows.append(self._record(task, iteration, "skipped", began, 0, NOT_TAKEN))
                continue
            seconds = self.rng.uniform(0.2, 90)
            if self.rng.random() < 0.05:  # a retried attempt
                rows.append(self._record(task, iteration, "failed", began, seconds, "timed out"))
                began += timedelta(seconds=seconds + 5)
                rows[-1]["attempt"], attempt = 1, 2
            else:
                attempt = 1
            cached = self.rng.random() < 0.1 and self._spec(task).kind == "python"
            record = self._record(task, iteration, "cached" if cached else "succeeded", began,
                                  0 if cached else seconds, "")  # fmt: skip
            record["attempt"] = attempt
            rows.append(record)
        self.ended[task.id] = max((r["ended_at"] for r in rows), default=began)
        return rows

    def _items(self, task: TaskSpec) -> list[int]:
        if task.loop is None:
            return [-1]
        loop = next(lp for lp in self.graph.loops if lp.id == task.loop)
        values = self.params.get(loop.items.name or "", [0, 1, 2])
        return list(range(len(values)))

    def _is_taken(self, task: TaskSpec) -> bool:
        arms = {b.id: b for b in self.graph.branches}
        return all(self.taken[arms[a].group] == arms[a].index for a in task.branches)

    def _spec(self, task: TaskSpec) -> Any:
        return self.graph.components[task.component]

    def _record(
        self,
        task: TaskSpec,
        iteration: int,
        state: str,
        began: datetime,
        seconds: float,
        error: str,
    ) -> dict[str, Any]:
        done = state in ("succeeded", "cached")
        return {
            "step": task.id, "iteration": iteration, "attempt": 1, "state": state,
            "cache_key": f"{self.rng.getrandbits(256):064x}" if done else None,
            "cached_from": f"pr_{self.rng.getrandbits(48):012x}" if state == "cached" else None,
            "inputs": self._inputs(task, iteration) if state != "skipped" else {},
            "outputs": self._outputs(task, iteration) if done else {},
            "error": error, "log": f"{task.id}: read inputs\n{task.id}: done\n" if done else "",
            "started_at": began, "ended_at": began + timedelta(seconds=seconds),
        }  # fmt: skip

    def _inputs(self, task: TaskSpec, iteration: int) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name, arg in task.arguments.items():
            if arg.kind == "constant":
                found[name] = arg.value
            elif arg.kind == "param":
                found[name] = self.params.get(arg.name or "")
            elif arg.kind == "loop_item":
                found[name] = self.params.get("regions", ["eu"])[max(iteration, 0) % 4]
            else:
                found[name] = self._value(arg.task or "", arg.name or "")
        return found

    def _outputs(self, task: TaskSpec, iteration: int) -> dict[str, Any]:
        spec = self._spec(task)
        if spec.kind == "approval":
            return {"approved": True, "decided_by": "alice", "comment": "looks good"}
        found = {name: self._value(task.id, name) for name in spec.returns}
        for name, type_name in spec.outputs.items():
            folder = task.id if iteration < 0 else f"{task.id}-{iteration}"
            found[name] = {
                "type": type_name, "uri": f"/srv/cloche/pipelines/{folder}/{name}",
                "metadata": {"auc": round(self.rng.random(), 3)} if type_name == "Metrics" else {},
                "sha256": f"{self.rng.getrandbits(256):064x}",
            }  # fmt: skip
        return found

    def _value(self, task_id: str, name: str) -> Any:
        spec = self._spec(self.graph.task(task_id))
        kind = spec.returns.get(name) or spec.outputs.get(name, "str")
        values = {"float": round(self.rng.random(), 3), "int": self.rng.randrange(10_000),
                  "bool": True, "list": ["f1"], "dict": {"churn:3": 90, "churn:4": 10}}  # fmt: skip
        return values.get(kind, f"{task_id}-{name}")
