"""Pipelines over REST on a live server (its scheduler off, so a queued run stays queued until a
test acts on it): registration, queued runs with checked parameters, step logs, cancel, retry,
and the token and role checked before a body is read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import cloche
from cloche.auth import tokens
from cloche.config import Settings
from cloche.errors import PipelineDefinitionError, RunStateConflict
from cloche.pipelines.loading import load_pipeline
from cloche.pipelines.server_runs import run_queued
from cloche.store.store import Store
from tests.integration.conftest import LiveServer, ServerFactory

SOURCE = """
from cloche.pipelines import component, pipeline


@component
def first(n: int) -> int:
    print(f"first saw {n}")
    return n


@component
def second(n: int, fail: bool) -> int:
    if fail:
        raise RuntimeError("told to fail")
    return n * 2


@pipeline(name="api-demo")
def api_demo(n: int, fail: bool = False) -> None:
    second(n=first(n=n).output, fail=fail)
"""


@pytest.fixture
def server(start_server: ServerFactory) -> LiveServer:
    return start_server(scheduler={"enabled": False})


@pytest.fixture
def pipeline_file(tmp_path: Path) -> Path:
    path = tmp_path / "api_demo.py"
    path.write_text(SOURCE)
    return path


@pytest.fixture
def sdk(server: LiveServer) -> Iterator[cloche.Client]:
    with cloche.Client(server.url, token=server.token) as client:
        yield client


def role_token(settings: Settings, role: str) -> str:
    store = Store.open(settings)
    try:
        return tokens.create_token(store, role=role, name=role).token
    finally:
        store.close()


def call(server: LiveServer, method: str, path: str, token: str | None = "", **kw: Any) -> Any:
    headers = {"Authorization": f"Bearer {token or server.token}"} if token is not None else {}
    return httpx.request(method, f"{server.url}/api/v1/pipelines{path}", headers=headers, **kw)


def error_of(response: httpx.Response) -> dict[str, str]:
    body: dict[str, dict[str, str]] = response.json()
    return body["error"]


def test_a_registered_pipeline_is_queued_over_rest_with_its_params_checked(
    server: LiveServer, sdk: cloche.Client, pipeline_file: Path
) -> None:
    registered = sdk.pipelines.register(pipeline_file)
    assert (registered.name, registered.version, registered.steps) == ("api-demo", 1, 2)
    assert sdk.pipelines.register(pipeline_file).version == 1  # same source: same version
    assert set(sdk.pipelines.list()[0].params) == {"n", "fail"}
    response = call(server, "POST", "/api-demo/runs", json={"params": {"n": 3}})
    assert response.status_code == 202, response.text
    queued = response.json()
    assert queued["state"] == "queued" and queued["params"] == {"n": 3, "fail": False}
    assert [r.id for r in sdk.pipelines.runs(state="queued")] == [queued["id"]]
    assert sdk.pipelines.runs(pipeline="other") == []
    assert sdk.pipelines.get(queued["id"][:8]).id == queued["id"]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({}, "needs the parameter 'n' (int)"),
        ({"n": "three"}, "parameter 'n' takes a int, not str 'three'"),
        ({"n": 3, "m": 1}, "has no parameter 'm'"),
    ],
)
def test_a_missing_mistyped_or_unknown_param_is_refused_naming_it(
    server: LiveServer, sdk: cloche.Client, pipeline_file: Path, params: dict, named: str
) -> None:
    sdk.pipelines.register(pipeline_file)
    response = call(server, "POST", "/api-demo/runs", json={"params": params})
    assert response.status_code == 422 and error_of(response)["code"] == "invalid_input"
    assert named in error_of(response)["message"]
    assert sdk.pipelines.runs() == []  # nothing half-recorded


def test_an_unknown_pipeline_run_or_step_is_404_with_what_to_do(
    server: LiveServer, sdk: cloche.Client, pipeline_file: Path
) -> None:
    missing = call(server, "POST", "/nowhere/runs", json={})
    assert missing.status_code == 404 and "cloche pipelines register" in error_of(missing)["hint"]
    no_run = call(server, "POST", "/runs/pr_000000000000/cancel")
    assert no_run.status_code == 404 and error_of(no_run)["code"] == "pipeline_run_not_found"
    sdk.pipelines.register(pipeline_file)
    run_id = sdk.pipelines.run("api-demo", {"n": 1}).id
    no_step = call(server, "GET", f"/runs/{run_id}/steps/third/logs")
    assert no_step.status_code == 404 and error_of(no_step)["code"] == "step_not_found"


def test_no_token_is_401_and_a_viewer_reads_but_may_not_run_cancel_retry_or_approve(
    server: LiveServer, sdk: cloche.Client, pipeline_file: Path
) -> None:
    sdk.pipelines.register(pipeline_file)
    run_id = sdk.pipelines.run("api-demo", {"n": 1}).id
    assert call(server, "GET", "/runs", token=None).status_code == 401
    assert call(server, "POST", "/api-demo/runs", token=None, json={}).status_code == 401
    viewer = role_token(server.settings, "viewer")
    assert call(server, "GET", f"/runs/{run_id}", token=viewer).status_code == 200
    assert call(server, "GET", "", token=viewer).json()[0]["name"] == "api-demo"
    # The role is refused before the body is looked at: a malformed body still gets 403.
    for path in ("/api-demo/runs", f"/runs/{run_id}/steps/first/approve", ""):
        refused = call(server, "POST", path, token=viewer, content=b"{not json")
        assert refused.status_code == 403, (path, refused.text)
        assert "role 'viewer' may not" in error_of(refused)["message"]
    for action in ("cancel", "retry"):
        assert call(server, "POST", f"/runs/{run_id}/{action}", token=viewer).status_code == 403
    deployer = role_token(server.settings, "deployer")
    cancelled = call(server, "POST", f"/runs/{run_id}/cancel", token=deployer)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    # A registered source is code the server runs: a deployer may run it, not register it.
    refused = call(server, "POST", "", token=deployer, content=b"{not json")
    assert refused.status_code == 403 and "may not publish" in error_of(refused)["message"]
    assert "publisher" in error_of(refused)["hint"]
    queued = call(server, "POST", "/api-demo/runs", token=deployer, json={"params": {"n": 1}})
    assert queued.status_code == 202, queued.text
    publisher = role_token(server.settings, "publisher")
    with cloche.Client(server.url, token=publisher) as as_publisher:
        assert as_publisher.pipelines.register(pipeline_file).name == "api-demo"


def test_cancelling_a_queued_run_cancels_its_steps_and_a_second_cancel_is_409(
    server: LiveServer, sdk: cloche.Client, pipeline_file: Path
) -> None:
    sdk.pipelines.register(pipeline_file)
    run_id = sdk.pipelines.run("api-demo", {"n": 1}).id
    cancelled = sdk.pipelines.cancel(run_id[:6])
    assert cancelled.state == "cancelled" and cancelled.ended_at is not None
    assert cancelled.step_states() == {"first": "cancelled", "second": "cancelled"}
    again = call(server, "POST", f"/runs/{run_id}/cancel")
    assert again.status_code == 409 and error_of(again)["code"] == "run_state_conflict"
    assert "already ended (cancelled)" in error_of(again)["message"]
    actions = [e.action for e in sdk.audit.list(resource_type="pipeline_run")]
    assert actions == ["pipeline.cancel"]


def test_a_failed_run_from_a_file_is_retried_once_its_source_is_registered(
    server: LiveServer, sdk: cloche.Client, pipeline_file: Path
) -> None:
    pipeline = load_pipeline(str(pipeline_file))
    with cloche.Client(settings=server.settings) as here:
        failed = here.pipelines.run(pipeline, {"n": 4, "fail": True})
    assert failed.state == "failed"
    assert failed.step_states() == {"first": "succeeded", "second": "failed"}
    logs = sdk.pipelines.logs(failed.id, "first")
    assert [(r.attempt, r.state) for r in logs] == [(1, "succeeded")]
    assert "first saw 4" in logs[0].log
    with pytest.raises(RunStateConflict, match="holds no registered version"):
        sdk.pipelines.retry(failed.id)
    sdk.pipelines.register(pipeline_file)
    retried = call(server, "POST", f"/runs/{failed.id}/retry")
    assert retried.status_code == 202 and retried.json()["state"] == "queued"
    assert retried.json()["error"] == "" and retried.json()["ended_at"] is None
    twice = call(server, "POST", f"/runs/{failed.id}/retry")
    assert twice.status_code == 409 and "only a failed or cancelled run" in twice.text


def test_approving_a_step_that_waits_for_no_decision_is_409(
    server: LiveServer, sdk: cloche.Client, pipeline_file: Path
) -> None:
    sdk.pipelines.register(pipeline_file)
    run_id = sdk.pipelines.run("api-demo", {"n": 1}).id
    response = call(server, "POST", f"/runs/{run_id}/steps/first/approve", json={})
    assert response.status_code == 409 and error_of(response)["code"] == "not_waiting_for_approval"


def test_run_with_a_pipeline_object_runs_it_here_in_either_form(
    client: cloche.Client, pipeline_file: Path
) -> None:
    pipeline = load_pipeline(str(pipeline_file))
    result = client.pipelines.run(pipeline, {"n": 2})
    assert result.state == "succeeded"
    assert result.step_states() == {"first": "succeeded", "second": "succeeded"}
    assert client.pipelines.get(result.id).steps[-1].outputs == {"output": 4}
    assert [r.id for r in client.pipelines.runs(pipeline="api-demo")] == [result.id]


def test_a_registered_graph_its_source_does_not_make_is_refused_or_never_run(
    server: LiveServer, pipeline_file: Path
) -> None:
    graph = load_pipeline(str(pipeline_file)).graph.model_dump(mode="json")
    body = {"source": SOURCE, "file_name": "api_demo.py", "graph": graph | {"name": "../up"}}
    escaping = call(server, "POST", "", json=body)
    assert escaping.status_code == 422 and error_of(escaping)["code"] == "invalid_name"
    doctored = body | {"graph": graph | {"description": "not what the file says"}}
    assert call(server, "POST", "", json=doctored).status_code == 201
    run_id = call(server, "POST", "/api-demo/runs", json={"params": {"n": 1}}).json()["id"]
    store = Store.open(server.settings)
    try:
        with pytest.raises(PipelineDefinitionError, match="source hash or graph differs"):
            run_queued(store, run_id)
    finally:
        store.close()
