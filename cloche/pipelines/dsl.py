"""The pipeline being defined: its steps, how their inputs are bound, and the groups they are in.

A ``@pipeline`` function runs once, when it is decorated, with a ``Builder`` set as the current
one; each component call inside it becomes a ``Task`` whose inputs are checked against the
component's types then and there, so a mistake names its step and field before anything runs.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cloche.errors import PipelineDefinitionError
from cloche.pipelines.artifacts import accepts
from cloche.pipelines.graph import (
    Argument,
    Branch,
    ComponentSpec,
    Loop,
    ParamSpec,
    Retry,
    TaskSpec,
)
from cloche.pipelines.refs import LoopItem, OutputRef, PipelineParam, Ref, as_argument

if TYPE_CHECKING:
    from cloche.pipelines.component import Component

_CURRENT: ContextVar[Builder | None] = ContextVar("cloche_pipeline_builder", default=None)


@dataclass
class Builder:
    name: str
    params: dict[str, ParamSpec] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    components: dict[str, Component] = field(default_factory=dict)
    branches: list[Branch] = field(default_factory=list)
    loops: list[Loop] = field(default_factory=list)
    exit_groups: dict[str, str] = field(default_factory=dict)
    branch_stack: list[str] = field(default_factory=list)
    loop_stack: list[str] = field(default_factory=list)
    group_stack: list[str] = field(default_factory=list)
    # The If/Elif arm that just closed, at which depth: an Elif or Else must follow it at once.
    last_arm: tuple[str, int, int] | None = None
    _counts: dict[str, int] = field(default_factory=dict)

    def new_id(self, prefix: str) -> str:
        self._counts[prefix] = self._counts.get(prefix, 0) + 1
        count = self._counts[prefix]
        return prefix if count == 1 else f"{prefix}-{count}"


def current() -> Builder:
    builder = _CURRENT.get()
    if builder is None:
        raise PipelineDefinitionError(
            "steps, If, ParallelFor and ExitHandler are used inside a @pipeline function",
            hint="to run a component's function directly, call component.python_func(...)",
        )
    return builder


def building(builder: Builder) -> Any:
    return _CURRENT.set(builder)


def done_building(token: Any) -> None:
    _CURRENT.reset(token)


class Task:
    """One step of the pipeline being defined; its outputs feed later steps."""

    def __init__(self, builder: Builder, component: Component, arguments: dict[str, Argument]):
        self.id = builder.new_id(component.name)
        self.component = component
        self.arguments = arguments
        self.branches = list(builder.branch_stack)
        self.loop = builder.loop_stack[-1] if builder.loop_stack else None
        self.groups = list(builder.group_stack)
        self.retry = Retry()
        self.caching = True
        self.timeout_seconds: float | None = None
        self.after_ids: list[str] = []
        self.exit_group: str | None = None

    @property
    def outputs(self) -> _Outputs:
        return _Outputs(self)

    @property
    def output(self) -> OutputRef:
        spec = self.component.spec
        names = [*spec.returns, *spec.outputs]
        if len(names) != 1:
            raise PipelineDefinitionError(
                f"step {self.id!r} has {len(names)} outputs, so `.output` is ambiguous",
                hint=f"use .outputs[name] with one of: {', '.join(names) or '(none)'}",
            )
        return self.outputs[names[0]]

    def set_retry(
        self,
        num_retries: int,
        *,
        backoff_seconds: float = 0.0,
        backoff_factor: float = 2.0,
        max_backoff_seconds: float = 3600.0,
    ) -> Task:
        if num_retries < 0 or backoff_seconds < 0 or backoff_factor < 1:
            raise PipelineDefinitionError(
                f"step {self.id!r}: retries and backoff must be >= 0, the factor >= 1"
            )
        self.retry = Retry(
            attempts=num_retries,
            backoff_seconds=backoff_seconds,
            backoff_factor=backoff_factor,
            max_backoff_seconds=max_backoff_seconds,
        )
        return self

    def set_caching_options(self, enable_caching: bool) -> Task:
        self.caching = bool(enable_caching)
        return self

    def set_timeout(self, seconds: float) -> Task:
        if seconds <= 0:
            raise PipelineDefinitionError(f"step {self.id!r}: the timeout must be > 0 seconds")
        self.timeout_seconds = float(seconds)
        return self

    def after(self, *tasks: Task) -> Task:
        for task in tasks:
            if not isinstance(task, Task):
                raise PipelineDefinitionError(f"step {self.id!r}: after() takes steps")
            self.after_ids.append(task.id)
        return self

    def spec(self) -> TaskSpec:
        return TaskSpec(
            id=self.id,
            component=self.component.name,
            arguments=self.arguments,
            after=self.after_ids,
            branches=self.branches,
            loop=self.loop,
            exit_group=self.exit_group,
            groups=self.groups,
            retry=self.retry,
            caching=self.caching,
            timeout_seconds=self.timeout_seconds,
        )

    def __repr__(self) -> str:
        return f"<step {self.id}>"


class _Outputs:
    def __init__(self, task: Task) -> None:
        self._task = task

    def __getitem__(self, name: str) -> OutputRef:
        spec, task = self._task.component.spec, self._task
        if name in spec.returns:
            return OutputRef(task.id, name, "param", spec.returns[name], task.loop)
        if name in spec.outputs:
            return OutputRef(task.id, name, "artifact", spec.outputs[name], task.loop)
        known = ", ".join([*spec.returns, *spec.outputs]) or "(none)"
        raise PipelineDefinitionError(
            f"step {task.id!r} has no output {name!r}", hint=f"its outputs: {known}"
        )


def add_task(component: Component, kwargs: dict[str, Any]) -> Task:
    builder = current()
    known = builder.components.get(component.name)
    if known is not None and known.spec.source_hash != component.spec.source_hash:
        raise PipelineDefinitionError(
            f"two different components are named {component.name!r}",
            hint="give one another name: @component(name=...)",
        )
    builder.components[component.name] = component
    task = Task(builder, component, {})
    task.arguments = bind(builder, task, component.spec, kwargs)
    builder.tasks[task.id] = task
    builder.last_arm = None
    return task


def bind(
    builder: Builder, task: Task, spec: ComponentSpec, kwargs: dict[str, Any]
) -> dict[str, Argument]:
    for name in kwargs:
        if name in spec.outputs:
            raise PipelineDefinitionError(
                f"step {task.id!r}, field {name!r}: the step writes this artifact",
                hint="leave it out; later steps read it as step.outputs[...]",
            )
        if name not in spec.params and name not in spec.inputs:
            raise PipelineDefinitionError(
                f"step {task.id!r} has no input {name!r}",
                hint=f"its inputs: {', '.join([*spec.params, *spec.inputs]) or '(none)'}",
            )
    bound: dict[str, Argument] = {}
    for name, param in spec.params.items():
        if name in kwargs:
            bound[name] = _bind_param(builder, task, name, param, kwargs[name])
        elif not param.optional:
            raise PipelineDefinitionError(f"step {task.id!r} is missing its input {name!r}")
    for name, wanted in spec.inputs.items():
        if name not in kwargs:
            raise PipelineDefinitionError(f"step {task.id!r} is missing its artifact {name!r}")
        bound[name] = _bind_artifact(builder, task, name, wanted, kwargs[name])
    return bound


def _bind_param(builder: Builder, task: Task, name: str, param: ParamSpec, value: Any) -> Argument:
    where = f"step {task.id!r}, input {name!r}"
    if isinstance(value, Ref):
        _check_scope(builder, task, where, value)
        if value.kind == "artifact":
            raise PipelineDefinitionError(f"{where} takes a {param.type}, not {value.describe()}")
        if value.type is not None and not compatible(param.type, value.type):
            raise PipelineDefinitionError(
                f"{where} takes a {param.type}, and {value.describe()} is a {value.type}"
            )
        return value.argument()
    if isinstance(value, Task):
        raise PipelineDefinitionError(f"{where}: pass {value.id}.output, not the step itself")
    if value is None and param.optional:
        return as_argument(value, where)
    if not matches(param.type, value):
        raise PipelineDefinitionError(
            f"{where} takes a {param.type}, not {type(value).__name__} {value!r}"
        )
    return as_argument(value, where)


def _bind_artifact(builder: Builder, task: Task, name: str, wanted: str, value: Any) -> Argument:
    where = f"step {task.id!r}, artifact {name!r}"
    if isinstance(value, Task):
        value = value.output
    if not isinstance(value, OutputRef) or value.kind != "artifact":
        shown = value.describe() if isinstance(value, Ref) else repr(value)
        raise PipelineDefinitionError(
            f"{where} takes a {wanted} made by an upstream step, not {shown}",
            hint="pass step.outputs[name] of a step that writes it, or importer(uri=...)",
        )
    if not accepts(wanted, value.type or ""):
        raise PipelineDefinitionError(
            f"{where} takes a {wanted}; {value.describe()} is a {value.type}"
        )
    _check_scope(builder, task, where, value)
    return value.argument()


def _check_scope(builder: Builder, task: Task, where: str, ref: Ref) -> None:
    if isinstance(ref, LoopItem) and ref.loop not in builder.loop_stack:
        raise PipelineDefinitionError(f"{where}: {ref.describe()} is used outside its loop")
    if isinstance(ref, OutputRef):
        producer = builder.tasks[ref.task]
        if producer.loop is not None and producer.loop not in builder.loop_stack:
            raise PipelineDefinitionError(
                f"{where}: step {producer.id!r} runs once per item of a ParallelFor",
                hint="use its outputs inside that loop",
            )
        if producer.branches != builder.branch_stack[: len(producer.branches)]:
            raise PipelineDefinitionError(
                f"{where}: step {producer.id!r} runs only when its If/Elif/Else branch is taken",
                hint="use its outputs inside that branch",
            )


def compatible(wanted: str, given: str) -> bool:
    return wanted == given or (wanted == "float" and given == "int")


def matches(type_tag: str, value: Any) -> bool:
    if isinstance(value, bool):
        return type_tag == "bool"
    checks: dict[str, type | tuple[type, ...]] = {
        "str": str,
        "int": int,
        "float": (int, float),
        "dict": dict,
        "list": (list, tuple),
    }
    wanted = checks.get(type_tag)
    return wanted is not None and isinstance(value, wanted)


def param_ref(name: str, spec: ParamSpec) -> PipelineParam:
    return PipelineParam(name=name, type=spec.type)
