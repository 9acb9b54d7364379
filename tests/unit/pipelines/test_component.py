"""@component reads a typed function's interface, and refuses what cannot be wired."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from cloche.errors import PipelineDefinitionError
from cloche.pipelines import Dataset, Input, Metrics, Model, Output, component


class Evaluation(NamedTuple):
    auc: float
    passed: bool


def test_parameters_artifacts_and_returns_make_the_interface() -> None:
    @component
    def evaluate(
        model: Input[Model],
        data: Input[Dataset],
        metrics: Output[Metrics],
        threshold: float = 0.8,
        labels: list[str] | None = None,
        name: str = "auc",
    ) -> Evaluation:
        raise AssertionError("not run when defined")

    spec = evaluate.spec
    assert spec.name == "evaluate"
    assert spec.inputs == {"model": "Model", "data": "Dataset"}
    assert spec.outputs == {"metrics": "Metrics"}
    assert {p: (s.type, s.default, s.optional) for p, s in spec.params.items()} == {
        "threshold": ("float", 0.8, True),
        "labels": ("list", None, True),
        "name": ("str", "auc", True),
    }
    assert spec.returns == {"auc": "float", "passed": "bool"}


def test_one_returned_value_is_the_output_and_none_is_no_output() -> None:
    @component
    def score(n: int) -> float:
        return n / 2

    @component
    def log(message: str) -> None:
        pass

    assert score.spec.returns == {"output": "float"}
    assert log.spec.returns == {}
    assert score.python_func(3) == 1.5  # the function itself stays callable


def test_the_source_hash_changes_with_the_source_and_not_otherwise() -> None:
    def first(n: int) -> int:
        return n + 1

    def second(n: int) -> int:
        return n + 2

    assert component(first).spec.source_hash == component(first).spec.source_hash
    assert component(first).spec.source_hash != component(second).spec.source_hash


def test_a_name_can_be_given() -> None:
    @component(name="train-model")
    def train(n: int) -> None:
        pass

    assert train.name == "train-model"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def f(n): pass", "parameter 'n' has no type hint"),
        ("def f(n: set) -> None: pass", "is not a parameter type"),
        ("def f(d: Dataset) -> None: pass", "say whether the step reads or writes it"),
        ("def f(*rows: int) -> None: pass", "*args and **kwargs cannot be wired"),
        ("def f(n: int) -> set: pass", "return value"),
        ("def f(n: 'Missing') -> None: pass", "does not resolve"),
    ],
)
def test_a_function_that_cannot_be_wired_is_refused_naming_the_parameter(
    source: str, message: str
) -> None:
    namespace: dict[str, object] = {"Dataset": Dataset}
    exec(source, namespace)
    with pytest.raises(PipelineDefinitionError, match="component 'f'") as caught:
        component(namespace["f"])  # type: ignore[call-overload]
    assert message in caught.value.message


def test_calling_a_component_outside_a_pipeline_says_how_to_run_it() -> None:
    @component
    def double(n: int) -> int:
        return n * 2

    with pytest.raises(PipelineDefinitionError) as caught:
        double(n=2)
    assert "python_func" in (caught.value.hint or "")


def test_metrics_keep_logged_values_as_floats() -> None:
    metrics = Metrics(name="metrics", uri="/tmp/x")
    metrics.log_metric("auc", 1)
    assert metrics.metadata == {"auc": 1.0}
    assert metrics.path == "/tmp/x"


class Clash(NamedTuple):
    metrics: dict  # type: ignore[type-arg]


def test_a_returned_value_and_an_artifact_with_one_name_are_refused() -> None:
    def clashing(metrics: Output[Metrics]) -> Clash:
        raise AssertionError

    with pytest.raises(PipelineDefinitionError, match="both a returned value and an output"):
        component(clashing)
