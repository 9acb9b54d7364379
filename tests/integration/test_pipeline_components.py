"""The prebuilt components in a real pipeline on a real home: a version is uploaded, evaluated
against production on labelled rows, deployed as a canary and promoted, or not; batch scoring
and a drift check run through the same services as the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cloche
from cloche.config import Settings
from cloche.pipelines import Else, If, pipeline
from cloche.pipelines.components import (
    batch_predict,
    create_endpoint,
    deploy_model,
    evaluate_model,
    promote_alias,
    set_traffic,
    upload_model,
)
from cloche.pipelines.runner import run_pipeline
from cloche.store.store import Store

COLUMNS = ["tenure", "spend", "visits", "age"]


@pytest.fixture
def holdout(tmp_path: Path, iris_like: tuple[np.ndarray, np.ndarray]) -> Path:
    X, y = iris_like
    frame = pd.DataFrame(X, columns=COLUMNS)
    frame["label"] = y
    path = tmp_path / "holdout.parquet"
    frame.to_parquet(path)
    return path


@pytest.fixture
def weak_model_file(tmp_path: Path, iris_like: tuple[np.ndarray, np.ndarray]) -> Path:
    """A classifier that has seen a sliver of the data: worse than the fixture's."""
    import joblib
    from sklearn.dummy import DummyClassifier

    X, y = iris_like
    model = DummyClassifier(strategy="most_frequent").fit(pd.DataFrame(X, columns=COLUMNS), y)
    path = tmp_path / "weak.joblib"
    joblib.dump(model, path)
    return path


def rollout():  # type: ignore[no-untyped-def]
    @pipeline(name="rollout")
    def continuous_rollout(model_file: str, holdout: str) -> None:
        candidate = upload_model(path=model_file, name="churn")
        endpoint = create_endpoint(name="churn")
        check = evaluate_model(
            model=candidate.output,
            data=holdout,
            label_column="label",
            thresholds={"min_accuracy": 0.5},
            against="churn@prod",
        )
        with If(check.outputs["passed"] == True):  # noqa: E712
            canary = deploy_model(endpoint=endpoint.output, model=candidate.output, traffic=10)
            full = set_traffic(endpoint=endpoint.output, split={"churn:2": 100}).after(canary)
            promote_alias(model=candidate.output, alias="prod").after(full)
        with Else():
            set_traffic(endpoint=endpoint.output, split={"churn:1": 100})

    return continuous_rollout


def _production(settings: Settings, model_file: Path) -> None:
    with cloche.Client(settings=settings) as client:
        client.models.upload(model_file, name="churn", aliases=["prod"])
        client.endpoints.create("churn")
        client.endpoints.deploy("churn", "churn@prod")


def test_a_better_version_is_canaried_then_promoted(
    store: Store, settings: Settings, weak_model_file: Path, sklearn_model_file: Path,
    holdout: Path,
) -> None:  # fmt: skip
    _production(settings, weak_model_file)
    params = {"model_file": str(sklearn_model_file), "holdout": str(holdout)}
    run = run_pipeline(store, rollout(), params, actor="test")
    assert run.state == "succeeded", [(s.step, s.error) for s in run.steps]
    evaluation = run.latest()[("evaluate_model", -1)].outputs
    assert evaluation["passed"] is True and evaluation["reasons"] == []
    assert (
        evaluation["values"]["accuracy"] > evaluation["metrics"]["metadata"]["against"]["accuracy"]
    )
    assert run.latest()[("deploy_model", -1)].outputs["output"] == {"churn:1": 90, "churn:2": 10}
    with cloche.Client(settings=settings) as client:
        assert client.models.show("churn@prod").version == 2
        assert client.endpoints.get("churn").traffic() == {"churn:1": 0, "churn:2": 100}
    assert run.step_states()["set_traffic-2"] == "skipped"  # the Else arm


def test_a_worse_version_is_not_deployed_and_the_reason_is_recorded(
    store: Store, settings: Settings, weak_model_file: Path, sklearn_model_file: Path,
    holdout: Path,
) -> None:  # fmt: skip
    _production(settings, sklearn_model_file)
    params = {"model_file": str(weak_model_file), "holdout": str(holdout)}
    run = run_pipeline(store, rollout(), params, actor="test")
    assert run.state == "succeeded"
    states = run.step_states()
    assert states["deploy_model"] == "skipped" and states["promote_alias"] == "skipped"
    evaluation = run.latest()[("evaluate_model", -1)].outputs
    assert evaluation["passed"] is False
    assert any("worse than churn@prod" in r for r in evaluation["reasons"])
    with cloche.Client(settings=settings) as client:
        assert client.models.show("churn@prod").version == 1
        assert client.endpoints.get("churn").traffic() == {"churn:1": 100}


def test_batch_predict_scores_a_dataset_through_the_batch_service(
    store: Store, settings: Settings, sklearn_model_file: Path, sample_parquet: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    with cloche.Client(settings=settings) as client:
        client.models.upload(sklearn_model_file, name="churn")

    @pipeline(name="scoring")
    def scoring(data: str, out: str) -> None:
        batch_predict(model="churn:1", input=data, output=out)

    out = tmp_path / "scored"
    run = run_pipeline(store, scoring, {"data": str(sample_parquet), "out": str(out)}, actor="t")
    assert run.state == "succeeded", run.steps[-1].error
    job_id = run.latest()[("batch_predict", -1)].outputs["output"]
    with cloche.Client(settings=settings) as client:
        job = client.batch.get(job_id)
    assert job.state == "succeeded" and job.progress["rows_done"] == len(
        pd.read_parquet(sample_parquet)
    )
    assert list(out.glob("*.parquet"))


def test_a_component_refused_by_the_service_fails_its_step_with_the_services_message(
    store: Store,
) -> None:
    @pipeline(name="promote")
    def promote() -> None:
        promote_alias(model="ghost:1", alias="prod")

    run = run_pipeline(store, promote, {}, actor="t")
    assert run.state == "failed"
    assert "model_not_found" in run.latest()[("promote_alias", -1)].error


def test_deploying_again_sets_the_share_on_the_deployment_already_there(
    store: Store, settings: Settings, sklearn_model_file: Path, weak_model_file: Path
) -> None:
    _production(settings, weak_model_file)
    with cloche.Client(settings=settings) as client:
        client.models.upload(sklearn_model_file, name="churn")

    @pipeline(name="canary")
    def canary(share: int) -> None:
        deploy_model(endpoint="churn", model="churn:2", traffic=share)

    assert run_pipeline(store, canary, {"share": 10}, actor="t").state == "succeeded"
    again = run_pipeline(store, canary, {"share": 10}, actor="t", use_cache=False)
    assert again.state == "succeeded", again.steps[-1].error
    more = run_pipeline(store, canary, {"share": 30}, actor="t")
    assert more.state == "succeeded", more.steps[-1].error
    with cloche.Client(settings=settings) as client:
        assert client.endpoints.get("churn").traffic() == {"churn:1": 70, "churn:2": 30}
