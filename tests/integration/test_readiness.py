"""Readiness that means warm, through a real server: model and server ready over HTTP and gRPC,
a canary that cannot load leaves its traffic to the warm stable (and `endpoints show` says why),
and a version with a stored baseline warms up on its rows."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

import cloche
from cloche.config import Settings
from cloche.errors import InvalidInput, Unavailable
from cloche.serving.protocols.grpc_gen import grpc_predict_v2_pb2 as pb
from cloche.serving.protocols.grpc_gen.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from cloche.store.store import Store
from tests.e2e._cli import cloche as cli
from tests.e2e._servers import cloche_up
from tests.e2e.test_up_serving import continuous_load, deploy_churn, wait_until
from tests.integration.conftest import LiveServer, ServerFactory
from tests.integration.test_grpc import Loop, serving

FEATURES = ["tenure", "spend", "visits", "age"]


@pytest.fixture(scope="module")
def frame() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(200, 4)), columns=FEATURES)
    return X, (X["tenure"] + X["spend"] > 0).astype(int).to_numpy()


@pytest.fixture
def sdk(
    settings: Settings, tmp_path: Path, frame: tuple[pd.DataFrame, np.ndarray]
) -> cloche.Client:
    """churn:1 (stable, 90%) and churn:2 (canary, 10%) deployed; churn:2's file was changed in
    the artifact store after upload, so it cannot load."""
    X, y = frame
    client = cloche.Client(settings=settings)
    for version, c in ((1, 1.0), (2, 0.5)):
        path = tmp_path / f"churn_v{version}.joblib"
        joblib.dump(LogisticRegression(C=c).fit(X, y), path)
        client.models.upload(path, name="churn")
    client.endpoints.create("churn")
    client.endpoints.deploy("churn", "churn:1")
    client.endpoints.deploy("churn", "churn:2", traffic=10)
    stored = next((settings.home / "artifacts").rglob("churn_v2.joblib"))
    stored.write_bytes(b"changed behind cloche's back")
    return client


@pytest.fixture
def server(sdk: cloche.Client, start_server: ServerFactory) -> LiveServer:
    return start_server(serving={"workers": 1, "poll_ms": 100})


def test_a_canary_that_cannot_load_is_not_ready_and_its_traffic_stays_on_the_stable(
    server: LiveServer, frame: tuple[pd.DataFrame, np.ndarray]
) -> None:
    rows = frame[0].head(2).to_numpy().tolist()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        answers = [
            http.post("/v1/models/churn:predict", json={"instances": rows}) for _ in range(60)
        ]
        endpoint = http.get("/v2/models/churn/ready")
        stable = http.get("/v2/models/churn/versions/1/ready")
        canary = http.get("/v2/models/churn/versions/2/ready")
        v1 = http.get("/v1/models/churn")
        health = http.get("/v2/health/ready")
    # 60 requests at 10% would reach the canary about 6 times: none did, none failed.
    assert {(r.status_code, r.json()["version"]) for r in answers} == {(200, 1)}
    assert endpoint.status_code == 200, endpoint.text
    assert endpoint.json() == {"name": "churn", "ready": True, "resident": True}
    assert stable.json() == {"name": "churn", "ready": True, "resident": True, "version": "1"}
    assert canary.status_code == 503, canary.text
    reason = canary.json()["reason"]
    assert reason.startswith("model churn:2 cannot be loaded: artifact file") and "sha256" in reason
    assert (v1.status_code, v1.json()["ready"]) == (200, True)
    # The server serves: the broken canary is named, not counted against it.
    assert health.status_code == 200, health.text
    assert health.json()["ready"] is True
    assert list(health.json()["not_ready_models"]) == ["churn/churn:2"]


def test_endpoints_show_names_the_deployment_that_is_not_warm_and_why(server: LiveServer) -> None:
    env = {"CLOCHE_URL": server.url}
    shown = cli("endpoints", "show", "churn", env=env)
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert "Not warm: churn:2 on worker" in text and "sha256" in text
    as_json = cli("endpoints", "show", "churn", "--json", env=env)
    (failed,) = json.loads(as_json.output)["not_warm"]
    assert failed["ref"] == "churn:2" and "sha256" in failed["reason"]


def test_an_endpoint_whose_only_model_cannot_load_answers_503_on_ready_naming_why(
    settings: Settings, tmp_path: Path, frame: tuple[pd.DataFrame, np.ndarray], start_server
) -> None:
    X, y = frame
    client = cloche.Client(settings=settings)
    path = tmp_path / "lonely.joblib"
    joblib.dump(LogisticRegression().fit(X, y), path)
    client.models.upload(path, name="lonely")
    client.endpoints.create("lonely")
    client.endpoints.deploy("lonely", "lonely:1")
    next((settings.home / "artifacts").rglob("lonely.joblib")).write_bytes(b"broken")
    server = start_server(serving={"workers": 1, "poll_ms": 100})
    with httpx.Client(base_url=server.url, timeout=30) as http:
        ready = http.get("/v2/models/lonely/ready")
        v1 = http.get("/v1/models/lonely")
        missing = http.get("/v2/models/lonely/versions/9/ready")
        unknown = http.get("/v2/models/nobody/ready")
    assert ready.status_code == 503, ready.text
    assert ready.json()["ready"] is False
    assert ready.json()["reason"].startswith("model lonely:1 cannot be loaded")
    assert v1.status_code == 503 and v1.json()["ready"] is False
    assert missing.status_code == 404, missing.text
    assert "serves no version '9' (deployed: lonely:1)" in missing.json()["error"]
    assert unknown.status_code == 404 and "cloche endpoints list" in unknown.json()["hint"]


def test_a_model_left_out_of_the_budget_is_ready_but_not_resident_until_asked(
    settings: Settings, tmp_path: Path, frame: tuple[pd.DataFrame, np.ndarray], start_server
) -> None:
    X, y = frame
    client = cloche.Client(settings=settings)
    sizes = []
    for name in ("first", "second"):
        path = tmp_path / f"{name}.joblib"
        joblib.dump(LogisticRegression().fit(X, y), path)
        sizes.append(path.stat().st_size)
        client.models.upload(path, name=name)
        client.endpoints.create(name)
        client.endpoints.deploy(name, f"{name}:1")
    # Room for one of the two (counted at their file sizes, never measured): warming loads one
    # and skips the other, which the first request for it loads.
    server = start_server(serving={"workers": 1, "poll_ms": 100, "model_memory": max(sizes) + 1})
    with httpx.Client(base_url=server.url, timeout=30) as http:
        before = {n: http.get(f"/v2/models/{n}/ready").json() for n in ("first", "second")}
        (cold,) = [n for n, body in before.items() if not body["resident"]]
        answer = http.post(
            f"/v1/models/{cold}:predict", json={"instances": X.head(1).values.tolist()}
        )
        after = http.get(f"/v2/models/{cold}/ready").json()
    assert [body["ready"] for body in before.values()] == [True, True]
    assert before[cold] == {"name": cold, "ready": True, "resident": False}
    assert answer.status_code == 200, answer.text
    assert after == {"name": cold, "ready": True, "resident": True}


def test_a_version_with_a_stored_baseline_warms_up_on_its_rows(
    settings: Settings, tmp_path: Path, start_server: ServerFactory
) -> None:
    # A string column: the cache cannot make a warm-up row from the signature, only the
    # baseline's rows can warm this model.
    rng = np.random.default_rng(1)
    X = pd.DataFrame({"plan": rng.choice(["basic", "pro"], 100), "spend": rng.normal(size=100)})
    y = (X["spend"] > 0).astype(int)
    encode = ColumnTransformer([("plan", OneHotEncoder(), ["plan"])], remainder="passthrough")
    path, baseline = tmp_path / "plans.joblib", tmp_path / "baseline.csv"
    joblib.dump(make_pipeline(encode, LogisticRegression()).fit(X, y), path)
    X.assign(label=y).to_csv(baseline, index=False)  # a label column beside the inputs
    client = cloche.Client(settings=settings)
    client.models.upload(path, name="plans", sample=baseline, baseline=baseline)
    client.endpoints.create("plans")
    client.endpoints.deploy("plans", "plans:1")
    server = start_server(serving={"workers": 1, "poll_ms": 100})
    with httpx.Client(base_url=server.url, timeout=30) as http:
        ready = http.get("/v2/models/plans/ready")
    assert ready.json() == {"name": "plans", "ready": True, "resident": True}
    (loaded,) = [m for m in client.models.loaded(all=True) if m.model == "plans"]
    assert "warm_up" in loaded.load_seconds, loaded


@pytest.fixture
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()


def test_grpc_model_ready_is_false_for_a_canary_that_cannot_load(
    sdk: cloche.Client, store: Store, loop: Loop
) -> None:
    with (
        serving(loop, store) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        stub = GRPCInferenceServiceStub(channel)
        assert stub.ServerReady(pb.ServerReadyRequest()).ready
        assert stub.ModelReady(pb.ModelReadyRequest(name="churn")).ready
        assert stub.ModelReady(pb.ModelReadyRequest(name="churn", version="1")).ready
        assert not stub.ModelReady(pb.ModelReadyRequest(name="churn", version="2")).ready
        with pytest.raises(grpc.RpcError) as missing:
            stub.ModelReady(pb.ModelReadyRequest(name="churn", version="9"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND


HEAVY_MODEL = """
import os
import time
from pathlib import Path


class Heavy:
    def predict(self, X):
        return [7 for _ in X]


def load(folder):
    # In `cloche up` (the test sets the variable there only): say which worker is loading,
    # then take long enough for the test to kill it in the middle.
    markers = os.environ.get("CLOCHE_TEST_LOAD_MARKERS")
    if markers:
        Path(markers, f"{os.getpid()}.loading").touch()
        time.sleep(3)
        Path(markers, f"{os.getpid()}.loaded").touch()
    return Heavy()
"""


def _pids(folder: Path, suffix: str) -> set[int]:
    return {int(p.name.split(".")[0]) for p in folder.glob(f"*.{suffix}")}


@pytest.mark.slow
def test_a_worker_killed_while_loading_is_replaced_and_the_other_keeps_serving(
    settings: Settings, tmp_path: Path, sklearn_model_file: Path
) -> None:
    markers, heavy = tmp_path / "markers", tmp_path / "heavy"
    markers.mkdir()
    heavy.mkdir()
    (heavy / "model.py").write_text(HEAVY_MODEL)
    with cloche.Client(settings=settings) as sdk:
        deploy_churn(sdk, sklearn_model_file)
        sdk.models.upload(heavy, name="heavy")
        sdk.endpoints.create("heavy")
    env = {"CLOCHE_TEST_LOAD_MARKERS": str(markers)}
    with cloche_up(settings.home, workers=2, env=env) as up:
        before = up.wait_for_workers(2, timeout=20)
        with continuous_load(up.url, threads=2) as report:
            wait_until(lambda: report.ok() >= 20, timeout=20, what="20 answers before the deploy")
            with cloche.Client(settings=settings) as sdk:
                sdk.endpoints.deploy("heavy", "heavy:1")
            # A worker in the middle of loading the new model: kill it there.
            wait_until(
                lambda: bool((_pids(markers, "loading") - _pids(markers, "loaded")) & before),
                timeout=20,
                what="a worker loading the heavy model",
            )
            victim = min((_pids(markers, "loading") - _pids(markers, "loaded")) & before)
            os.kill(victim, signal.SIGKILL)
            after = up.wait_for_workers(2, timeout=20, exclude={victim})
            (replacement,) = after - before
            # The replacement warms the deployed model before it serves; the survivor has.
            wait_until(
                lambda: {replacement, *(before - {victim})} <= _pids(markers, "loaded"),
                timeout=30,
                what="both live workers loaded the heavy model",
            )
            served = report.ok()
            wait_until(lambda: report.ok() >= served + 20, timeout=20, what="answers after it")
        with httpx.Client(base_url=up.url, timeout=10) as http:
            heavy_answers = [
                http.post("/v1/models/heavy:predict", json={"instances": [[1.0]]}) for _ in range(6)
            ]
            ready = http.get("/v2/models/heavy/ready")
    assert victim not in _pids(markers, "loaded")  # it was killed mid-load
    # The other endpoint never failed: only a request in flight on the killed worker may have.
    assert set(report.statuses) == {200}, report.statuses
    assert len(report.errors) <= 2, report.errors
    assert {(r.status_code, r.json()["predictions"][0]) for r in heavy_answers} == {(200, 7)}
    assert ready.json() == {"name": "heavy", "ready": True, "resident": True}


def _register(client: cloche.Client, tmp_path: Path, frame: tuple[pd.DataFrame, np.ndarray]):
    X, y = frame
    path = tmp_path / "waited.joblib"
    joblib.dump(LogisticRegression().fit(X, y), path)
    client.models.upload(path, name="waited")
    client.endpoints.create("waited")
    return path


def test_deploy_with_wait_returns_once_the_serving_worker_holds_it_warm(
    settings: Settings, tmp_path: Path, frame: tuple[pd.DataFrame, np.ndarray], start_server
) -> None:
    _register(cloche.Client(settings=settings), tmp_path, frame)
    server = start_server(serving={"workers": 1, "poll_ms": 100})
    with cloche.Client(server.url) as remote:
        remote.endpoints.deploy("waited", "waited:1", wait=True, wait_timeout_s=30)
        # No polling here: the deploy answered once the worker reported it resident.
        assert [m.ref for m in remote.models.loaded() if m.model == "waited"] == ["waited:1"]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/v2/models/waited/ready").json()["resident"] is True


def test_cli_deploy_wait_fails_naming_the_worker_and_why_when_the_model_cannot_load(
    settings: Settings, tmp_path: Path, frame: tuple[pd.DataFrame, np.ndarray], start_server
) -> None:
    _register(cloche.Client(settings=settings), tmp_path, frame)
    next((settings.home / "artifacts").rglob("waited.joblib")).write_bytes(b"broken")
    server = start_server(serving={"workers": 1, "poll_ms": 100})
    env = {"CLOCHE_URL": server.url}
    result = cli(
        "endpoints", "deploy", "waited", "waited:1", "--wait", "--wait-timeout", "30", env=env
    )
    text = " ".join(result.output.split())
    assert result.exit_code != 0, result.output
    assert f"waited:1 is deployed but failed to warm on worker {os.getpid()}" in text
    assert "sha256" in text and "cloche endpoints show" in text


def test_deploy_wait_times_out_naming_the_workers_not_warm(
    settings: Settings,
    tmp_path: Path,
    start_server: ServerFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    heavy, markers = tmp_path / "heavy", tmp_path / "markers"
    heavy.mkdir()
    markers.mkdir()
    (heavy / "model.py").write_text(HEAVY_MODEL)
    client = cloche.Client(settings=settings)
    client.models.upload(heavy, name="heavy")
    client.endpoints.create("heavy")
    server = start_server(serving={"workers": 1, "poll_ms": 100})
    monkeypatch.setenv("CLOCHE_TEST_LOAD_MARKERS", str(markers))  # its load takes 3 s now
    with cloche.Client(server.url) as remote, pytest.raises(Unavailable) as late:
        remote.endpoints.deploy("heavy", "heavy:1", wait=True, wait_timeout_s=0.5)
    assert late.value.message.startswith("heavy:1 is deployed but not warm after 0.5 s on worker")
    assert str(os.getpid()) in late.value.message and "--wait-timeout" in (late.value.hint or "")
    # The deploy is recorded all the same, and the hint says so and how to watch it.
    assert "do not deploy it again" in (late.value.hint or "")
    assert "`cloche endpoints show heavy`" in (late.value.hint or "")
    assert [d.ref for d in client.endpoints.get("heavy").deployments] == ["heavy:1"]


def test_a_wait_out_of_range_is_refused_before_deploying(
    settings: Settings, tmp_path: Path, frame: tuple[pd.DataFrame, np.ndarray]
) -> None:
    client = cloche.Client(settings=settings)
    _register(client, tmp_path, frame)
    with pytest.raises(InvalidInput, match="more than 0 and at most 3600 s, got 0") as refused:
        client.endpoints.deploy("waited", "waited:1", wait=True, wait_timeout_s=0)
    assert "--wait-timeout" in (refused.value.hint or "")
    assert client.endpoints.get("waited").deployments == []
    flag = cli("endpoints", "deploy", "waited", "waited:1", "--wait", "--wait-timeout", "0")
    assert flag.exit_code == 2 and "--wait-timeout" in flag.output
