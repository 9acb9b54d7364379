"""Lineage on a real home: a pipeline run uploads, deploys, promotes and scores with a version,
and every one of those things points back to the run and the step, both ways."""

from __future__ import annotations

from pathlib import Path

import pytest

import cloche
from cloche.config import Settings
from cloche.errors import (
    ArtifactNotFound,
    EndpointNotFound,
    InvalidReference,
    PipelineRunNotFound,
    VersionNotFound,
)
from cloche.lineage.entities import Lineage, Product
from cloche.lineage.service import get_lineage
from cloche.pipelines import pipeline
from cloche.pipelines.components import (
    batch_predict,
    create_endpoint,
    deploy_model,
    promote_alias,
    upload_model,
)
from cloche.pipelines.entities import PipelineRun
from cloche.pipelines.runner import run_pipeline
from cloche.store.store import Store


def release():  # type: ignore[no-untyped-def]
    @pipeline(name="release")
    def release_pipeline(model_file: str, rows: str, scored: str) -> None:
        candidate = upload_model(path=model_file, name="churn")
        endpoint = create_endpoint(name="churn")
        canary = deploy_model(endpoint=endpoint.output, model=candidate.output, traffic=100)
        promote_alias(model=candidate.output, alias="prod").after(canary)
        batch_predict(model=candidate.output, input=rows, output=scored)

    return release_pipeline


@pytest.fixture
def run(
    store: Store, sklearn_model_file: Path, sample_parquet: Path, tmp_path: Path
) -> PipelineRun:
    params = {
        "model_file": str(sklearn_model_file),
        "rows": str(sample_parquet),
        "scored": str(tmp_path / "scored"),
    }
    done = run_pipeline(store, release(), params, actor="test")
    assert done.state == "succeeded", [(s.step, s.error) for s in done.steps]
    return done


def _flatten(products: list[Product]) -> list[Product]:
    return [p for product in products for p in [product, *_flatten(product.made)]]


def _origins(found: Lineage) -> set[tuple[str, str, str]]:
    return {(o.run_id, o.step, f"{o.relation} {o.target}".strip()) for o in found.made_by}


def test_the_version_behind_an_alias_names_the_run_and_steps_that_made_and_promoted_it(
    store: Store, run: PipelineRun
) -> None:
    found = get_lineage(store, "churn@prod")
    assert (found.kind, found.id, found.note) == ("model_version", "churn:1", "")
    assert _origins(found) == {
        (run.id, "upload_model", "created"),
        (run.id, "promote_alias", "alias prod"),
    }
    promote = next(o for o in found.made_by if o.step == "promote_alias")
    model_input = next(i for i in promote.inputs if i.name == "model")
    assert model_input.value == "churn:1"
    assert model_input.source == "output output of upload_model"
    assert model_input.made_by is not None and model_input.made_by.step == "upload_model"
    assert model_input.made_by.repeated  # expanded once, in the first origin
    upload = next(o for o in found.made_by if o.step == "upload_model")
    assert {i.name: i.source for i in upload.inputs}["path"] == "parameter model_file"


def test_a_version_made_by_a_run_lists_what_it_went_on_to_make(
    store: Store, run: PipelineRun
) -> None:
    made = _flatten(get_lineage(store, "churn:1").made)
    steps = {p.step for p in made if p.kind == "step"}
    assert {"deploy_model", "promote_alias", "batch_predict"} <= steps
    deployed = [p for p in made if p.kind == "endpoint" and p.relation == "deployed churn:1"]
    assert deployed and deployed[0].step == "deploy_model" and deployed[0].run_id == run.id
    jobs = [p for p in made if p.kind == "batch_job" and p.step == "batch_predict"]
    job_id = run.latest()[("batch_predict", -1)].outputs["output"]
    assert [j.id for j in jobs] == [job_id]
    assert any(p.kind == "endpoint" and p.relation == "serves it (100%)" for p in made)


def test_an_endpoint_and_a_batch_job_point_back_to_their_steps(
    store: Store, run: PipelineRun, tmp_path: Path
) -> None:
    endpoint = get_lineage(store, "churn")
    assert _origins(endpoint) == {
        (run.id, "create_endpoint", "created"),
        (run.id, "deploy_model", "deployed churn:1"),
    }
    made = [(p.kind, p.id, p.relation) for p in endpoint.made]
    assert ("model_version", "churn:1", "serves 100%") in made
    assert ("step", f"{run.id}/deploy_model", "input endpoint") in made  # took its name
    job_id = run.latest()[("batch_predict", -1)].outputs["output"]
    job = get_lineage(store, job_id)
    assert _origins(job) == {(run.id, "batch_predict", "created churn:1")}
    model = next(i for i in job.made_by[0].inputs if i.name == "model")
    assert model.made_by is not None and model.made_by.step == "upload_model"
    assert [(p.kind, p.id) for p in job.made] == [("output", str(tmp_path / "scored"))]


def test_a_step_artifact_shows_its_step_and_the_steps_that_took_it(
    store: Store, run: PipelineRun
) -> None:
    found = get_lineage(store, f"{run.id}/upload_model/output")
    assert (found.kind, _origins(found)) == (
        "artifact",
        {(run.id, "upload_model", "output output")},
    )
    consumers = {p.step for p in found.made}
    assert consumers == {"deploy_model", "promote_alias", "batch_predict"}
    promote = next(p for p in found.made if p.step == "promote_alias")
    assert [(p.kind, p.id, p.relation) for p in promote.made] == [
        ("model_version", "churn:1", "alias prod")
    ]


def test_a_version_uploaded_by_hand_has_no_lineage_and_says_so(
    store: Store, settings: Settings, sklearn_model_file: Path
) -> None:
    with cloche.Client(settings=settings) as client:
        client.models.upload(sklearn_model_file, name="manual")
    found = get_lineage(store, "manual:1")
    assert found.made_by == [] and found.made == []
    assert found.note == "manual:1 was not made or changed by a pipeline run"


@pytest.mark.parametrize(
    ("ref", "error"),
    [
        ("churn:9", VersionNotFound),
        ("nowhere", EndpointNotFound),
        ("pr_000000000000/upload_model/output", PipelineRunNotFound),
        ("pr_nothing", InvalidReference),
        ("", InvalidReference),
    ],
)
def test_a_ref_that_names_nothing_is_a_clear_error(
    store: Store, run: PipelineRun, ref: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        get_lineage(store, ref)


def test_an_output_the_step_never_made_names_what_it_did_make(
    store: Store, run: PipelineRun
) -> None:
    with pytest.raises(ArtifactNotFound, match="it made: output"):
        get_lineage(store, f"{run.id}/upload_model/model")


def test_a_step_in_a_process_of_its_own_is_linked_too(store: Store) -> None:
    @pipeline(name="serve")
    def serve() -> None:
        create_endpoint(name="forked")

    done = run_pipeline(store, serve, {}, actor="test", executor="process")
    assert done.state == "succeeded", [(s.step, s.error) for s in done.steps]
    assert _origins(get_lineage(store, "forked")) == {(done.id, "create_endpoint", "created")}


def test_a_deleted_endpoint_leaves_no_links_for_the_next_one_of_its_name(
    store: Store, settings: Settings
) -> None:
    @pipeline(name="serve")
    def serve() -> None:
        create_endpoint(name="again")

    assert run_pipeline(store, serve, {}, actor="test").state == "succeeded"
    with cloche.Client(settings=settings) as client:
        client.endpoints.delete("again")
        client.endpoints.create("again")
    assert get_lineage(store, "again").made_by == []


def test_a_step_reached_by_many_paths_is_expanded_once(store: Store) -> None:
    from cloche.pipelines import component

    @component
    def add(a: int, b: int) -> int:
        return a + b

    @pipeline(name="ladder")
    def ladder() -> None:
        # Each step takes the two before it: 2^20 paths from the first step to the last.
        older, newer = add(a=0, b=1), add(a=1, b=1)
        for _ in range(20):
            older, newer = newer, add(a=older.output, b=newer.output)

    done = run_pipeline(store, ladder, {}, actor="test")
    assert done.state == "succeeded"
    down = _flatten(get_lineage(store, f"{done.id}/add/output").made)
    assert len([p for p in down if not p.repeated]) == 20  # add-3 to add-22, once each
    last = get_lineage(store, f"{done.id}/add-22/output").made_by[0]
    assert last.inputs[1].made_by is not None and last.inputs[1].made_by.step == "add-21"
