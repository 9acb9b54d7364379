"""A stored or hand-written graph is checked on load as the DSL checks it when defined."""

from __future__ import annotations

import pytest

from cloche.errors import PipelineDefinitionError
from cloche.pipelines.graph import Argument, ComponentSpec, PipelineGraph, TaskSpec

STEP = ComponentSpec(name="step", params={}, returns={"output": "int"}, source_hash="h")


def _output(task: str) -> Argument:
    return Argument(kind="output", task=task, name="output")


def test_a_cycle_in_a_stored_graph_is_refused_naming_its_steps() -> None:
    graph = PipelineGraph(
        name="loop",
        components={"step": STEP},
        tasks=[
            TaskSpec(id="a", component="step", arguments={"x": _output("b")}),
            TaskSpec(id="b", component="step", arguments={"x": _output("a")}),
            TaskSpec(id="c", component="step"),
        ],
    )
    with pytest.raises(PipelineDefinitionError, match="the steps a, b depend on each other"):
        graph.order()


@pytest.mark.parametrize(
    ("task", "message"),
    [
        (TaskSpec(id="a", component="nope"), "unknown component 'nope'"),
        (TaskSpec(id="a", component="step", arguments={"x": _output("zz")}), "no step 'zz'"),
        (
            TaskSpec(
                id="a",
                component="step",
                arguments={"x": Argument(kind="output", task="a", name="auc")},
            ),
            "has no output 'auc'",
        ),
        (
            TaskSpec(id="a", component="step", arguments={"x": Argument(kind="param", name="p")}),
            "has no parameter 'p'",
        ),
        (TaskSpec(id="a", component="step", loop="loop-9"), "unknown loop"),
        (TaskSpec(id="a", component="step", after=["ghost"]), "after unknown 'ghost'"),
    ],
)
def test_a_stored_graph_with_a_dangling_reference_is_refused(task: TaskSpec, message: str) -> None:
    graph = PipelineGraph(name="bad", components={"step": STEP}, tasks=[task])
    with pytest.raises(PipelineDefinitionError, match=message):
        graph.order()


def test_an_unknown_field_in_stored_data_is_refused() -> None:
    with pytest.raises(ValueError, match="extra"):
        PipelineGraph.model_validate({"name": "x", "tasks": [], "surprise": 1})
