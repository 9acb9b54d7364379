"""A walk over the steps of pipeline runs, up (the step that made something, its inputs and the
steps that made those) and down (the steps that took something as an input, and what they made).

Each run's graph is read once per walk, and each step is expanded once in each direction: a step
reached again by another path is named with ``repeated`` set, not expanded again, so the answer
for a wide pipeline (many paths through the same steps) stays as large as the pipeline.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloche.lineage.entities import Product, StepInput, StepOrigin
from cloche.lineage.subjects import last_attempt
from cloche.pipelines.graph import Argument, PipelineGraph
from cloche.store.tables import LineageRow, PipelineRunRow


class Walk:
    def __init__(self, session: Session) -> None:
        self.session = session
        self._runs: dict[str, tuple[str, PipelineGraph]] = {}
        self._up: set[tuple[str, str]] = set()
        self._down: set[tuple[str, str]] = set()

    def run(self, run_id: str) -> tuple[str, PipelineGraph]:
        """The run's pipeline name and graph (a link's foreign key keeps the run there)."""
        if run_id not in self._runs:
            row = self.session.get(PipelineRunRow, run_id)
            assert row is not None, run_id
            self._runs[run_id] = (row.pipeline, PipelineGraph.model_validate(row.graph))
        return self._runs[run_id]

    def origin(self, run_id: str, label: str, relation: str, target: str = "") -> StepOrigin:
        """The step ``label`` of the run, with its inputs and what made each of them."""
        pipeline, graph = self.run(run_id)
        attempt = last_attempt(self.session, run_id, label)
        repeated = (run_id, label) in self._up
        self._up.add((run_id, label))
        task = next((t for t in graph.tasks if t.id == label.partition("[")[0]), None)
        inputs = []
        if task is not None and attempt is not None and not repeated:
            for name, arg in task.arguments.items():
                inputs.append(self._input(run_id, label, name, arg, attempt.inputs.get(name)))
        return StepOrigin(
            run_id=run_id,
            pipeline=pipeline,
            step=label,
            relation=relation,
            target=target,
            cached_from=attempt.cached_from if attempt is not None else None,
            inputs=inputs,
            repeated=repeated,
        )

    def _input(self, run_id: str, label: str, name: str, arg: Argument, value: Any) -> StepInput:
        if arg.kind != "output" or not arg.task:
            source = {"constant": "constant", "param": f"parameter {arg.name}"}.get(arg.kind)
            return StepInput(name=name, value=value, source=source or "loop item")
        producer = self._same_item(run_id, arg.task, label)
        return StepInput(
            name=name,
            value=value,
            source=f"output {arg.name} of {producer}",
            made_by=self.origin(run_id, producer, "output", arg.name or ""),
        )

    def _same_item(self, run_id: str, task: str, label: str) -> str:
        """The label of ``task`` that goes with ``label``: the same loop item if it ran per
        item, else the task's one run."""
        _, bracket, rest = label.partition("[")
        if bracket and last_attempt(self.session, run_id, f"{task}[{rest}") is not None:
            return f"{task}[{rest}"
        return task

    def consumers(self, run_id: str, label: str, output: str | None = None) -> list[Product]:
        """The steps of the run that took ``label``'s ``output`` (any of its outputs when None)
        as an input, each with what it made."""
        _, graph = self.run(run_id)
        producer = label.partition("[")[0]
        found = []
        for task in graph.tasks:
            for name, arg in task.arguments.items():
                if arg.kind != "output" or arg.task != producer:
                    continue
                if output is not None and arg.name != output:
                    continue
                consumer = self._same_item(run_id, task.id, label)
                if last_attempt(self.session, run_id, consumer) is None:
                    continue  # a branch not taken, or a step that never ran
                found.append(self._step_product(run_id, consumer, f"input {name}"))
        return found

    def _step_product(self, run_id: str, label: str, relation: str) -> Product:
        repeated = (run_id, label) in self._down
        self._down.add((run_id, label))
        made: list[Product] = []
        if not repeated:
            made = [subject_product(link) for link in self.made_by_step(run_id, label)]
            made += self.consumers(run_id, label)
        return Product(
            kind="step",
            id=f"{run_id}/{label}",
            relation=relation,
            run_id=run_id,
            step=label,
            made=made,
            repeated=repeated,
        )

    def made_by_step(self, run_id: str, label: str) -> list[LineageRow]:
        query = select(LineageRow).where(LineageRow.run_id == run_id, LineageRow.step == label)
        return list(self.session.scalars(query.order_by(LineageRow.id)))


def subject_product(link: LineageRow) -> Product:
    """What a link's step made, as a Product: ``endpoint churn: deployed churn:3``."""
    return Product(
        kind=link.subject_kind,
        id=link.subject_id,
        relation=f"{link.relation} {link.target}".strip(),
        run_id=link.run_id,
        step=link.step,
    )
