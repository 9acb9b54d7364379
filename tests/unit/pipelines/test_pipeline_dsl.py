"""@pipeline builds a checked graph when it is defined: each mistake names its step and field."""

from __future__ import annotations

import json
from typing import NamedTuple

import pytest

from cloche.errors import PipelineDefinitionError
from cloche.pipelines import (
    Dataset,
    Elif,
    Else,
    ExitHandler,
    If,
    Input,
    Metrics,
    Model,
    Output,
    ParallelFor,
    PipelineGraph,
    component,
    pipeline,
)


class Evaluation(NamedTuple):
    auc: float
    passed: bool


@component
def load(path: str, data: Output[Dataset]) -> None: ...


@component
def train(data: Input[Dataset], model: Output[Model], epochs: int = 3) -> None: ...


@component
def evaluate(model: Input[Model], data: Input[Dataset], metrics: Output[Metrics]) -> Evaluation:
    raise AssertionError


@component
def deploy(ref: str, traffic: int = 100) -> str: ...


@component
def notify(message: str) -> None: ...


@component
def regions() -> list: ...


def rollout_pipeline():  # type: ignore[no-untyped-def]
    @pipeline(name="rollout")
    def rollout(path: str, threshold: float = 0.8, sites: list = ["a", "b"]) -> None:  # noqa: B006
        """Train, evaluate, deploy if good enough."""
        done = notify(message="finished")
        with ExitHandler(done):
            data = load(path=path)
            model = train(data=data.outputs["data"]).set_retry(2, backoff_seconds=1)
            check = evaluate(model=model.outputs["model"], data=data.outputs["data"])
            with If(check.outputs["auc"] >= threshold):
                deploy(ref="churn:2", traffic=10).set_timeout(30)
            with Elif(check.outputs["passed"]):
                notify(message="passed but below the threshold")
            with Else():
                notify(message="failed")
            with ParallelFor(sites, parallelism=2) as site:
                deploy(ref=site).set_caching_options(False)

    return rollout


def test_the_graph_records_steps_wiring_groups_and_options() -> None:
    rollout = rollout_pipeline()
    graph = rollout.graph
    assert [t.id for t in graph.tasks] == [
        "notify", "load", "train", "evaluate", "deploy", "notify-2", "notify-3", "deploy-2"
    ]  # fmt: skip
    assert graph.description == "Train, evaluate, deploy if good enough."
    assert graph.params["threshold"].default == 0.8
    train_step = graph.task("train")
    assert train_step.arguments["data"].model_dump(exclude_none=True) == {
        "kind": "output", "task": "load", "name": "data"
    }  # fmt: skip
    assert train_step.retry.attempts == 2 and train_step.retry.backoff_seconds == 1
    assert graph.task("deploy").timeout_seconds == 30
    assert graph.task("deploy-2").caching is False
    assert graph.task("deploy-2").arguments["ref"].kind == "loop_item"
    assert [b.id for b in graph.branches] == ["condition.0", "condition.1", "condition.2"]
    assert graph.branches[2].condition is None  # Else
    assert graph.task("notify-3").branches == ["condition.2"]
    assert graph.loops[0].parallelism == 2
    assert graph.exit_groups == {"exit": "notify"}
    assert graph.task("deploy-2").groups == ["exit"]


def test_steps_run_after_their_data_conditions_and_for_an_exit_step_its_whole_block() -> None:
    order = rollout_pipeline().graph.order()
    for later, earlier in [
        ("train", "load"),
        ("evaluate", "train"),
        ("deploy", "evaluate"),  # its If reads evaluate's output
        ("notify-3", "evaluate"),  # Else: decided by the arms before it
        ("notify", "deploy-2"),  # the exit step waits for its block
        ("notify", "notify-3"),
    ]:
        assert order.index(later) > order.index(earlier), (later, earlier)


def test_the_graph_is_plain_json_that_loads_back_the_same() -> None:
    graph = rollout_pipeline().graph
    again = PipelineGraph.model_validate(json.loads(graph.to_json()))
    assert again == graph
    assert again.order() == graph.order()


def test_the_source_hash_follows_the_pipeline_and_its_components() -> None:
    assert rollout_pipeline().source_hash == rollout_pipeline().source_hash

    @pipeline(name="rollout")
    def other(path: str) -> None:
        load(path=path)

    assert other.source_hash != rollout_pipeline().source_hash


def _define(body):  # type: ignore[no-untyped-def]
    return pipeline(name="broken")(body)


def test_an_unknown_input_names_the_step_and_lists_its_inputs() -> None:
    def body(path: str) -> None:
        load(path=path, folder="x")

    with pytest.raises(PipelineDefinitionError, match="step 'load' has no input 'folder'") as e:
        _define(body)
    assert "path" in (e.value.hint or "")


def test_a_wrong_type_names_the_step_and_field() -> None:
    def body(path: str) -> None:
        data = load(path=path)
        train(data=data.outputs["data"], epochs="three")

    with pytest.raises(PipelineDefinitionError, match="step 'train', input 'epochs' takes a int"):
        _define(body)


def test_a_parameter_of_another_type_is_refused_and_an_int_may_feed_a_float() -> None:
    @component
    def scale(factor: float) -> None: ...

    @pipeline(name="fine")
    def fine(n: int) -> None:
        scale(factor=n)

    assert fine.graph.task("scale").arguments["factor"].name == "n"

    def body(path: str) -> None:
        deploy(ref="x", traffic=path)

    with pytest.raises(PipelineDefinitionError, match="takes a int, and pipeline parameter 'path'"):
        _define(body)


def test_an_unknown_output_names_the_step_and_lists_its_outputs() -> None:
    def body(path: str) -> None:
        data = load(path=path)
        train(data=data.outputs["dataset"])

    with pytest.raises(PipelineDefinitionError, match="step 'load' has no output 'dataset'") as e:
        _define(body)
    assert "data" in (e.value.hint or "")


def test_an_artifact_of_the_wrong_type_is_refused() -> None:
    def body(path: str) -> None:
        data = load(path=path)
        model = train(data=data.outputs["data"])
        evaluate(model=data.outputs["data"], data=model.outputs["model"])

    with pytest.raises(PipelineDefinitionError, match="artifact 'model' takes a Model"):
        _define(body)


def test_an_artifact_input_needs_an_upstream_output_not_a_path() -> None:
    def body(path: str) -> None:
        train(data=path)

    with pytest.raises(PipelineDefinitionError, match="made by an upstream step"):
        _define(body)


def test_a_missing_input_and_a_written_artifact_passed_in_are_refused() -> None:
    def missing(path: str) -> None:
        deploy(traffic=5)

    with pytest.raises(PipelineDefinitionError, match="missing its input 'ref'"):
        _define(missing)

    def written(path: str) -> None:
        load(path=path, data="x")

    with pytest.raises(PipelineDefinitionError, match="the step writes this artifact"):
        _define(written)


def test_ambiguous_output_asks_for_a_name() -> None:
    def body(path: str) -> None:
        data = load(path=path)
        check = evaluate(model=train(data=data.output).output, data=data.output)
        deploy(ref=check.output)

    with pytest.raises(PipelineDefinitionError, match="has 3 outputs"):
        _define(body)


def test_outputs_of_a_branch_or_a_loop_are_not_used_outside_it() -> None:
    def from_branch(path: str) -> None:
        data = load(path=path)
        check = evaluate(model=train(data=data.output).output, data=data.output)
        with If(check.outputs["passed"]):
            ref = deploy(ref="a")
        notify(message=ref.output)

    with pytest.raises(PipelineDefinitionError, match="runs only when its If/Elif/Else"):
        _define(from_branch)

    def from_loop(path: str) -> None:
        with ParallelFor(["a", "b"]) as item:
            ref = deploy(ref=item)
        notify(message=ref.output)

    with pytest.raises(PipelineDefinitionError, match="runs once per item of a ParallelFor"):
        _define(from_loop)


def test_a_python_if_on_an_output_is_refused_with_the_way_to_branch() -> None:
    def body(path: str) -> None:
        data = load(path=path)
        check = evaluate(model=train(data=data.output).output, data=data.output)
        if check.outputs["auc"] > 0.5:
            deploy(ref="a")

    with pytest.raises(PipelineDefinitionError, match="has no value while the pipeline is defined"):
        _define(body)


def test_elif_without_an_if_before_it_is_refused() -> None:
    def body(flag: bool) -> None:
        with Elif(flag == True):  # noqa: E712
            deploy(ref="a")

    with pytest.raises(PipelineDefinitionError, match="must follow an If or Elif"):
        _define(body)


def test_loops_take_lists_and_items_can_be_dicts() -> None:
    @pipeline(name="fan-out")
    def fan_out() -> None:
        with ParallelFor(regions().output) as region:
            deploy(ref=region["ref"], traffic=region["traffic"])

    step = fan_out.graph.task("deploy")
    assert step.arguments["ref"].key == "ref"
    assert fan_out.graph.order() == ["regions", "deploy"]

    def body(path: str) -> None:
        with ParallelFor(path) as item:
            deploy(ref=item)

    with pytest.raises(PipelineDefinitionError, match="ParallelFor needs a list"):
        _define(body)


def test_an_exit_handler_needs_a_step_defined_before_it_and_a_non_empty_block() -> None:
    def empty(path: str) -> None:
        with ExitHandler(notify(message="bye")):
            pass

    with pytest.raises(PipelineDefinitionError, match="holds no step"):
        _define(empty)


def test_two_different_components_with_one_name_are_refused() -> None:
    def make_other():  # type: ignore[no-untyped-def]
        @component(name="deploy")
        def other(ref: str) -> None:
            print(ref)

        return other

    other = make_other()

    def body(path: str) -> None:
        deploy(ref="a")
        other(ref="b")

    with pytest.raises(PipelineDefinitionError, match="two different components are named"):
        _define(body)


def test_a_pipeline_parameter_needs_a_type_and_the_pipeline_a_step() -> None:
    def untyped(path) -> None:  # type: ignore[no-untyped-def]
        load(path=path)

    with pytest.raises(PipelineDefinitionError, match="parameter 'path' has no type hint"):
        _define(untyped)

    def nothing(path: str) -> None:
        pass

    with pytest.raises(PipelineDefinitionError, match="has no step"):
        _define(nothing)


def test_a_pipeline_is_run_not_called() -> None:
    with pytest.raises(PipelineDefinitionError, match="is run, not called"):
        rollout_pipeline()(path="x")
