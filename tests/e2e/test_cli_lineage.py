"""`cloche lineage` against a real `cloche up`: a pipeline's steps reach the server over HTTP,
carrying their run and step in a header, and the version they put behind `prod` names that run
from the CLI, the SDK over HTTP and the REST API."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import cloche
from cloche.auth.roles import local_actor
from cloche.config import Settings
from cloche.lineage.context import HEADER
from cloche.pipelines import pipeline
from cloche.pipelines.components import (
    create_endpoint,
    deploy_model,
    promote_alias,
    upload_model,
)
from cloche.pipelines.entities import PipelineRun
from cloche.pipelines.runner import run_pipeline
from cloche.store.store import Store
from tests.e2e._cli import cloche as cloche_cli
from tests.e2e._servers import UpProcess, cloche_up

pytestmark = pytest.mark.slow


def release():  # type: ignore[no-untyped-def]
    @pipeline(name="release")
    def release_pipeline(model_file: str) -> None:
        candidate = upload_model(path=model_file, name="churn")
        endpoint = create_endpoint(name="churn")
        canary = deploy_model(endpoint=endpoint.output, model=candidate.output, traffic=100)
        promote_alias(model=candidate.output, alias="prod").after(canary)

    return release_pipeline


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[UpProcess, PipelineRun]]:
    """One server, and one run of the release pipeline whose steps called it over HTTP."""
    home = tmp_path_factory.mktemp("lineage") / "home"
    with cloche_up(home) as server:
        model_file = _model_file(tmp_path_factory.mktemp("model"))
        saved = dict(os.environ)
        # The run is kept in the server's store; its steps reach the server through its URL.
        os.environ.update(CLOCHE_HOME=str(home), CLOCHE_URL=server.url)
        os.environ.pop("CLOCHE_TOKEN", None)
        store = Store.open(Settings(home=home))
        try:
            run = run_pipeline(store, release(), {"model_file": str(model_file)}, actor="test")
        finally:
            store.close()
            os.environ.clear()
            os.environ.update(saved)
        assert run.state == "succeeded", [(s.step, s.error) for s in run.steps]
        yield server, run


def _model_file(folder: Path) -> Path:
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    path = folder / "model.joblib"
    joblib.dump(LogisticRegression().fit(X, (X[:, 0] > 0).astype(int)), path)
    return path


def test_the_version_behind_prod_names_the_run_that_put_it_there_over_http(
    served: tuple[UpProcess, PipelineRun],
) -> None:
    server, run = served
    env = {"CLOCHE_URL": server.url, "CLOCHE_HOME": str(server.home)}
    result = cloche_cli("lineage", "churn@prod", env=env)
    assert result.exit_code == 0, result.output
    assert "churn:1" in result.output and run.id in result.output
    assert "step promote_alias" in result.output and "step upload_model" in result.output
    found = ok_json_env(env, "lineage", "churn@prod")
    assert {(o["run_id"], o["step"], o["relation"]) for o in found["made_by"]} == {
        (run.id, "upload_model", "created"),
        (run.id, "promote_alias", "alias"),
    }
    with cloche.Client(server.url, home=server.home) as client:
        # Made over HTTP (the server's token), not in this process on its home.
        assert client.models.show("churn:1").created_by != local_actor()
        endpoint = client.lineage.get("churn")
    assert {(o.step, o.relation, o.target) for o in endpoint.made_by} == {
        ("create_endpoint", "created", ""),
        ("deploy_model", "deployed", "churn:1"),
    }


def ok_json_env(env: dict[str, str], *args: str) -> dict:  # type: ignore[type-arg]
    result = cloche_cli(*args, "--json", env=env)
    assert result.exit_code == 0, result.output
    found: dict = json.loads(result.stdout)  # type: ignore[type-arg]
    return found


def test_the_rest_route_checks_the_token_and_names_what_is_missing(
    served: tuple[UpProcess, PipelineRun],
) -> None:
    server, _ = served
    url = f"{server.url}/api/v1/lineage"
    assert httpx.get(url, params={"ref": "churn@prod"}).status_code == 401
    found = httpx.get(url, params={"ref": "churn@prod"}, headers=server.auth)
    assert found.status_code == 200 and found.json()["id"] == "churn:1"
    missing = httpx.get(url, params={"ref": "churn:9"}, headers=server.auth)
    assert missing.status_code == 404 and "no version 9" in missing.json()["error"]["message"]


def test_a_malformed_step_header_is_refused_before_anything_is_made(
    served: tuple[UpProcess, PipelineRun],
) -> None:
    server, _ = served
    response = httpx.post(
        f"{server.url}/api/v1/endpoints",
        json={"name": "forged"},
        headers={**server.auth, HEADER: "not a step"},
    )
    assert response.status_code == 422
    assert HEADER in response.json()["error"]["message"]
    listed = httpx.get(f"{server.url}/api/v1/endpoints", headers=server.auth).json()
    assert "forged" not in [e["name"] for e in listed]


def test_an_unknown_ref_exits_4_and_a_hand_made_version_says_it_has_no_run(
    served: tuple[UpProcess, PipelineRun],
) -> None:
    server, _ = served
    env = {"CLOCHE_URL": server.url, "CLOCHE_HOME": str(server.home)}
    missing = cloche_cli("lineage", "nowhere", env=env)
    assert missing.exit_code == 4 and "no endpoint 'nowhere'" in missing.output
    with cloche.Client(server.url, home=server.home) as client:
        client.models.upload(_model_file(server.home), name="manual")
    result = cloche_cli("lineage", "manual:1", env=env)
    assert result.exit_code == 0, result.output
    assert "was not made or changed by a pipeline run" in result.output
