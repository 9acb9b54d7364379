"""A pipeline as data: what is stored, hashed, shown and run. Built by the DSL, checked on load.

Every reference between steps is an ``Argument``; conditions, loops and exit handlers are named
groups the steps point at, so the graph is plain JSON and a runner needs nothing but this file
and the components' functions.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cloche.errors import PipelineDefinitionError

PARAM_TYPES = ("str", "int", "float", "bool", "dict", "list")
ComparisonOp = Literal["==", "!=", "<", "<=", ">", ">="]


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParamSpec(_Data):
    type: str
    default: Any = None
    optional: bool = False  # has a default (which may be None)


class ComponentSpec(_Data):
    """A step's interface: parameters in, artifacts in and out, returned values out."""

    name: str
    params: dict[str, ParamSpec] = {}
    inputs: dict[str, str] = {}  # artifact parameter -> artifact type
    outputs: dict[str, str] = {}  # artifact parameter the step writes -> artifact type
    returns: dict[str, str] = {}  # returned value -> parameter type ("output" for one value)
    source_hash: str
    # "approval": the runner waits for a person's decision instead of calling a function.
    kind: Literal["python", "approval"] = "python"


class Argument(_Data):
    """What a step's input is bound to."""

    kind: Literal["constant", "param", "output", "loop_item"]
    value: Any = None  # constant
    name: str | None = None  # pipeline parameter, or the upstream task's output
    task: str | None = None  # upstream task (kind "output")
    loop: str | None = None  # loop id (kind "loop_item")
    key: str | None = None  # a key of a dict item (kind "loop_item")


class Condition(_Data):
    left: Argument
    op: ComparisonOp
    right: Argument

    def __bool__(self) -> bool:
        # `if step.output > 0.5:` in a pipeline function would branch once, at definition.
        raise PipelineDefinitionError(
            "a comparison of a step's output has no value while the pipeline is defined",
            hint="branch on it with `with If(value > 0.8):`, not a Python `if`",
        )


class Branch(_Data):
    """One arm of an If/Elif/Else group: taken when its condition holds and no earlier arm's did."""

    id: str
    group: str
    index: int
    condition: Condition | None = None  # None: Else


class Loop(_Data):
    id: str
    items: Argument
    parallelism: int | None = None


class Retry(_Data):
    attempts: int = 0  # retries after the first try
    backoff_seconds: float = 0.0
    backoff_factor: float = 2.0
    max_backoff_seconds: float = 3600.0


class TaskSpec(_Data):
    id: str
    component: str
    arguments: dict[str, Argument] = {}
    after: list[str] = []  # explicit ordering beyond data dependencies
    branches: list[str] = []  # every enclosing If/Elif/Else arm, outermost first
    loop: str | None = None
    exit_group: str | None = None  # the ExitHandler group whose exit task this is
    groups: list[str] = []  # the ExitHandler groups this task is inside
    retry: Retry = Retry()
    caching: bool = True
    timeout_seconds: float | None = None

    def upstream(self) -> set[str]:
        found = {a.task for a in self.arguments.values() if a.kind == "output" and a.task}
        return found | set(self.after)


class PipelineGraph(_Data):
    name: str
    description: str = ""
    params: dict[str, ParamSpec] = {}
    components: dict[str, ComponentSpec] = {}
    tasks: list[TaskSpec] = []
    branches: list[Branch] = []
    loops: list[Loop] = []
    exit_groups: dict[str, str] = Field(default_factory=dict)  # group id -> its exit task
    source_hash: str = ""

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def task(self, task_id: str) -> TaskSpec:
        for task in self.tasks:
            if task.id == task_id:
                return task
        raise PipelineDefinitionError(f"pipeline {self.name!r} has no step {task_id!r}")

    def order(self) -> list[str]:
        """The steps in an order that runs every step after its upstream ones (Kahn's)."""
        check_graph(self)
        return topological_order(self.dependencies())

    def dependencies(self) -> dict[str, set[str]]:
        """Each step's upstream steps: its data, its after(), the steps its enclosing branches'
        conditions and its loop's items come from, and for an exit step every step of its block."""
        # An arm is decided by its own condition and those of the arms before it (Else: all).
        conditions = {
            b.id: {
                a.task
                for earlier in self.branches
                if earlier.group == b.group
                and earlier.index <= b.index
                and earlier.condition is not None
                for a in (earlier.condition.left, earlier.condition.right)
                if a.task
            }
            for b in self.branches
        }
        loops = {loop.id: {loop.items.task} if loop.items.task else set() for loop in self.loops}
        found = {t.id: t.upstream() for t in self.tasks}
        for t in self.tasks:
            for branch in t.branches:
                found[t.id] |= conditions.get(branch, set())
            if t.loop is not None:
                found[t.id] |= loops.get(t.loop, set())
        for group, exit_task in self.exit_groups.items():
            if exit_task in found:
                found[exit_task] |= {t.id for t in self.tasks if group in t.groups}
        return found


def topological_order(dependencies: dict[str, set[str]]) -> list[str]:
    """Kahn's algorithm; ties broken by name, so the order is the same on every machine."""
    import heapq

    waiting = {tid: len(set(up)) for tid, up in dependencies.items()}
    downstream: dict[str, list[str]] = {tid: [] for tid in dependencies}
    for tid, up in dependencies.items():
        for other in set(up):
            downstream.setdefault(other, []).append(tid)
    ready = [tid for tid, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        tid = heapq.heappop(ready)
        order.append(tid)
        for later in downstream.get(tid, []):
            waiting[later] -= 1
            if waiting[later] == 0:
                heapq.heappush(ready, later)
    if len(order) < len(waiting):
        cycle = ", ".join(sorted(set(waiting) - set(order)))
        raise PipelineDefinitionError(
            f"the steps {cycle} depend on each other in a cycle",
            hint="a step can only use outputs of steps defined before it",
        )
    return order


def check_graph(graph: PipelineGraph) -> None:
    """Refuse a stored or hand-written graph that the DSL could not have made."""
    ids = [t.id for t in graph.tasks]
    if len(ids) != len(set(ids)):
        raise PipelineDefinitionError(f"pipeline {graph.name!r} names a step twice")
    known = set(ids)
    loops = {loop.id for loop in graph.loops}
    branches = {b.id for b in graph.branches}
    for task in graph.tasks:
        if task.component not in graph.components:
            raise PipelineDefinitionError(
                f"step {task.id!r} runs the unknown component {task.component!r}"
            )
        for field, arg in task.arguments.items():
            _check_argument(graph, task, field, arg, known, loops)
        for other in task.after:
            if other not in known:
                raise PipelineDefinitionError(f"step {task.id!r} runs after unknown {other!r}")
        if task.loop is not None and task.loop not in loops:
            raise PipelineDefinitionError(f"step {task.id!r} is in unknown loop {task.loop!r}")
        for branch in task.branches:
            if branch not in branches:
                raise PipelineDefinitionError(f"step {task.id!r} is in unknown branch {branch!r}")
    for group, exit_task in graph.exit_groups.items():
        if exit_task not in known:
            raise PipelineDefinitionError(f"exit group {group!r} names unknown step {exit_task!r}")
    topological_order(graph.dependencies())


def _check_argument(
    graph: PipelineGraph,
    task: TaskSpec,
    field: str,
    arg: Argument,
    known: set[str],
    loops: set[str],
) -> None:
    where = f"step {task.id!r}, input {field!r}"
    if arg.kind == "param" and arg.name not in graph.params:
        raise PipelineDefinitionError(f"{where}: the pipeline has no parameter {arg.name!r}")
    if arg.kind == "output":
        if arg.task not in known:
            raise PipelineDefinitionError(f"{where}: no step {arg.task!r} in the pipeline")
        spec = graph.components[graph.task(arg.task).component]
        if arg.name not in spec.returns and arg.name not in spec.outputs:
            raise PipelineDefinitionError(f"{where}: step {arg.task!r} has no output {arg.name!r}")
    if arg.kind == "loop_item" and arg.loop not in loops:
        raise PipelineDefinitionError(f"{where}: no loop {arg.loop!r} in the pipeline")


def source_hash(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()
