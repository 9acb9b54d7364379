"""Control flow while a pipeline is defined: ``If``/``Elif``/``Else``, ``ParallelFor`` and
``ExitHandler``, each a ``with`` block whose steps the graph records as members of the group."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from cloche.errors import PipelineDefinitionError
from cloche.pipelines.dsl import Builder, Task, current
from cloche.pipelines.graph import Argument, Branch, Condition, Loop
from cloche.pipelines.refs import LoopItem, OutputRef, PipelineParam, Ref, as_argument


class _Arm:
    """One arm of an If/Elif/Else group."""

    def __init__(self, condition: Condition | None, *, opens_group: bool, keyword: str) -> None:
        self.builder = current()
        self.keyword = keyword
        depth = len(self.builder.branch_stack)
        if opens_group:
            self.group, self.index = self.builder.new_id("condition"), 0
        else:
            last = self.builder.last_arm
            if last is None or last[2] != depth:
                raise PipelineDefinitionError(
                    f"{keyword} must follow an If or Elif block directly, at the same depth"
                )
            self.group, self.index = last[0], last[1] + 1
        self.branch = Branch(
            id=f"{self.group}.{self.index}", group=self.group, index=self.index, condition=condition
        )

    def __enter__(self) -> None:
        self.builder.branches.append(self.branch)
        self.builder.branch_stack.append(self.branch.id)
        self.builder.last_arm = None

    def __exit__(self, *exc: object) -> None:
        self.builder.branch_stack.pop()
        depth = len(self.builder.branch_stack)
        self.builder.last_arm = None if self.keyword == "Else" else (self.group, self.index, depth)


def _condition(value: Any, keyword: str) -> Condition:
    if isinstance(value, Condition):
        return value
    if isinstance(value, Ref) and value.kind == "param" and value.type in ("bool", None):
        return Condition(
            left=value.argument(), op="==", right=Argument(kind="constant", value=True)
        )
    raise PipelineDefinitionError(
        f"{keyword} takes a comparison of a step's output or a parameter, e.g. "
        "If(evaluate.outputs['auc'] >= 0.8)",
        hint="a Python value is known already: use a Python `if` around the steps instead",
    )


class If(_Arm):
    """Steps in the block run only when ``condition`` holds when the run reaches them."""

    def __init__(self, condition: Any) -> None:
        super().__init__(_condition(condition, "If"), opens_group=True, keyword="If")


class Elif(_Arm):
    def __init__(self, condition: Any) -> None:
        super().__init__(_condition(condition, "Elif"), opens_group=False, keyword="Elif")


class Else(_Arm):
    def __init__(self) -> None:
        super().__init__(None, opens_group=False, keyword="Else")


class ParallelFor:
    """The block's steps run once per item of ``items`` (a list, a list parameter or output)."""

    def __init__(self, items: Any, parallelism: int | None = None) -> None:
        self.builder = current()
        if self.builder.loop_stack:
            raise PipelineDefinitionError(
                "a ParallelFor inside another is not supported",
                hint="loop over a list of dicts in one ParallelFor and use item['key']",
            )
        if parallelism is not None and parallelism < 1:
            raise PipelineDefinitionError("ParallelFor's parallelism must be at least 1")
        self.loop = Loop(
            id=self.builder.new_id("loop"), items=_items(items), parallelism=parallelism
        )

    def __enter__(self) -> LoopItem:
        self.builder.loops.append(self.loop)
        self.builder.loop_stack.append(self.loop.id)
        self.builder.last_arm = None
        return LoopItem(loop=self.loop.id)

    def __exit__(self, *exc: object) -> None:
        self.builder.loop_stack.pop()
        self.builder.last_arm = None


def _items(items: Any) -> Argument:
    if isinstance(items, OutputRef | PipelineParam):
        if items.kind != "param" or items.type not in ("list", None):
            raise PipelineDefinitionError(f"ParallelFor needs a list; {items.describe()} is not")
        return items.argument()
    if isinstance(items, list | tuple):
        return as_argument(list(items), "ParallelFor")
    raise PipelineDefinitionError(
        f"ParallelFor needs a list, a list parameter or a step's list output, not {items!r}"
    )


class ExitHandler:
    """``exit_task`` runs once every step in the block has finished, whether they failed or not."""

    def __init__(self, exit_task: Task) -> None:
        self.builder: Builder = current()
        if not isinstance(exit_task, Task) or exit_task.id not in self.builder.tasks:
            raise PipelineDefinitionError("ExitHandler takes a step defined before the block")
        if exit_task.exit_group is not None or exit_task.branches or exit_task.loop:
            raise PipelineDefinitionError(
                f"step {exit_task.id!r} cannot be an exit step: it is inside a branch, a loop, "
                "or already another block's exit step"
            )
        self.exit_task = exit_task
        self.group = self.builder.new_id("exit")

    def __enter__(self) -> None:
        self.exit_task.exit_group = self.group
        self.builder.exit_groups[self.group] = self.exit_task.id
        self.builder.group_stack.append(self.group)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.builder.group_stack.pop()
        members = [t for t in self.builder.tasks.values() if self.group in t.groups]
        if exc_type is None and not members:
            raise PipelineDefinitionError(f"the ExitHandler of {self.exit_task.id!r} holds no step")
