"""References a pipeline passes between steps while it is defined: its parameters, a step's
outputs and a loop's item. Comparing one makes a condition for ``If``/``Elif``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cloche.errors import PipelineDefinitionError
from cloche.pipelines.graph import Argument, ComparisonOp, Condition


class Ref:
    """A value known only when the pipeline runs. ``kind`` is "param" or "artifact"."""

    kind = "param"
    type: str | None = None  # a parameter type tag, or an artifact type; None: not known

    def argument(self) -> Argument:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def _compare(self, op: ComparisonOp, other: object) -> Condition:
        if self.kind != "param":
            raise PipelineDefinitionError(
                f"{self.describe()} is an artifact, not a value to compare"
            )
        return Condition(left=self.argument(), op=op, right=as_argument(other, "a condition"))

    def __eq__(self, other: object) -> Condition:  # type: ignore[override]
        return self._compare("==", other)

    def __ne__(self, other: object) -> Condition:  # type: ignore[override]
        return self._compare("!=", other)

    def __lt__(self, other: object) -> Condition:
        return self._compare("<", other)

    def __le__(self, other: object) -> Condition:
        return self._compare("<=", other)

    def __gt__(self, other: object) -> Condition:
        return self._compare(">", other)

    def __ge__(self, other: object) -> Condition:
        return self._compare(">=", other)

    __hash__ = None  # type: ignore[assignment]

    def __bool__(self) -> bool:
        raise PipelineDefinitionError(
            f"{self.describe()} has no value while the pipeline is defined",
            hint="branch on it with `with If(value > 0.8):`, not a Python `if`",
        )


@dataclass(eq=False)
class PipelineParam(Ref):
    name: str
    type: str | None

    def argument(self) -> Argument:
        return Argument(kind="param", name=self.name)

    def describe(self) -> str:
        return f"pipeline parameter {self.name!r}"


@dataclass(eq=False)
class OutputRef(Ref):
    task: str
    name: str
    kind: str  # type: ignore[misc]
    type: str | None
    loop: str | None = None  # the loop the producing step runs in

    def argument(self) -> Argument:
        return Argument(kind="output", task=self.task, name=self.name)

    def describe(self) -> str:
        return f"output {self.name!r} of step {self.task!r}"


@dataclass(eq=False)
class LoopItem(Ref):
    loop: str
    key: str | None = None
    type: str | None = None

    def __getitem__(self, key: str) -> LoopItem:
        return LoopItem(loop=self.loop, key=key)

    def argument(self) -> Argument:
        return Argument(kind="loop_item", loop=self.loop, key=self.key)

    def describe(self) -> str:
        return f"the item of loop {self.loop!r}" + (f" [{self.key!r}]" if self.key else "")


def as_argument(value: Any, where: str) -> Argument:
    if isinstance(value, Ref):
        return value.argument()
    if isinstance(value, Condition):
        raise PipelineDefinitionError(f"{where}: a condition is not a value")
    if not _plain(value):
        raise PipelineDefinitionError(
            f"{where}: {type(value).__name__} cannot be stored in a pipeline",
            hint="pass str, int, float, bool, None, or lists and dicts of them",
        )
    return Argument(kind="constant", value=value)


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, str | int | float | bool):
        return True
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False
