"""A model whose load hangs, through a real server: the worker starts and serves the other
models, the hung model's requests get 503 naming it within their timeout, its readiness says
it is still loading, and once the load ends it serves."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

import cloche
from cloche.config import Settings
from tests.integration.conftest import ServerFactory

HANGING_MODEL = """
import os
import time
from pathlib import Path


class Seven:
    def predict(self, X):
        return [7 for _ in X]


def load(folder):
    # Inside the test's server only (the variable is set after the upload's inspection): wait
    # for the file the test creates once it has seen the requests fail.
    until = os.environ.get("CLOCHE_TEST_LOAD_UNTIL")
    deadline = time.monotonic() + 120
    while until and not Path(until).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return Seven()
"""


def _deploy(
    settings: Settings,
    tmp_path: Path,
    sklearn_model_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    with_sample: bool,
) -> Path:
    """`fine` (a scikit-learn model) and `hung` (a model whose load waits for the returned
    file to exist) deployed, in that order."""
    folder, sample = tmp_path / "hung", tmp_path / "sample.csv"
    folder.mkdir()
    (folder / "model.py").write_text(HANGING_MODEL)
    # A sample records its inputs: the worker routes it without asking the model (which hangs).
    sample.write_text("tenure,spend,visits,age\n0.1,0.2,0.3,0.4\n")
    with cloche.Client(settings=settings) as sdk:
        sdk.models.upload(sklearn_model_file, name="fine")
        sdk.models.upload(folder, name="hung", sample=sample if with_sample else None)
        for name in ("fine", "hung"):
            sdk.endpoints.create(name)
        sdk.endpoints.deploy("fine", "fine:1")
        sdk.endpoints.deploy("hung", "hung:1", timeout_ms=1000)
    marker = tmp_path / "load-may-end"
    monkeypatch.setenv("CLOCHE_TEST_LOAD_UNTIL", str(marker))
    return marker


@pytest.fixture
def release(
    settings: Settings, tmp_path: Path, sklearn_model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    return _deploy(settings, tmp_path, sklearn_model_file, monkeypatch, with_sample=True)


def test_a_hung_load_gets_503_naming_the_model_while_the_others_serve(
    release: Path, start_server: ServerFactory
) -> None:
    # Before, the worker waited for every model at start: one hung load kept it from serving.
    server = start_server(serving={"workers": 1, "poll_ms": 100, "load_wait_seconds": 5})
    row = {"instances": [[0.1, 0.2, 0.3, 0.4]]}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        fine = http.post("/v1/models/fine:predict", json=row)
        hung = http.post("/v1/models/hung:predict", json=row)
        ready = http.get("/v2/models/hung/ready")
        health = http.get("/v2/health/ready")
        loaded = release.exists()
        release.touch()
        after = _until_ready(http, "hung")
        answer = http.post("/v1/models/hung:predict", json=row)
    assert not loaded  # every answer above came while the load still hung
    assert fine.status_code == 200, fine.text
    assert hung.status_code == 503, hung.text
    error = hung.json()["error"]
    assert error["message"].startswith("model hung/hung:1 is still loading")
    assert "timeout of 1000 ms" in error["message"] and "--timeout-ms" in error["hint"]
    assert ready.status_code == 503
    assert ready.json()["reason"].startswith("model hung:1 is still loading")
    assert health.json()["not_ready_models"] == {"hung/hung:1": ready.json()["reason"]}
    assert after == {"name": "hung", "ready": True, "resident": True}
    assert answer.status_code == 200 and answer.json()["predictions"] == [7]


def test_a_hung_model_whose_inputs_only_it_can_tell_gets_503_not_404(
    settings: Settings,
    tmp_path: Path,
    sklearn_model_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    start_server: ServerFactory,
) -> None:
    # No sample: the worker must ask the loaded model for its inputs, so it cannot route the
    # endpoint until the load ends. It says so, rather than that the endpoint does not exist.
    release = _deploy(settings, tmp_path, sklearn_model_file, monkeypatch, with_sample=False)
    server = start_server(serving={"workers": 1, "poll_ms": 100, "load_wait_seconds": 5})
    row = {"instances": [[0.1, 0.2, 0.3, 0.4]]}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        fine = http.post("/v1/models/fine:predict", json=row)
        hung = http.post("/v1/models/hung:predict", json=row)
        health = http.get("/v2/health/ready")
        release.touch()
        after = _until_ready(http, "hung")
    assert fine.status_code == 200, fine.text
    assert hung.status_code == 503, hung.text
    message = hung.json()["error"]["message"]
    assert message.startswith("endpoint 'hung' cannot serve yet: model hung:1 is still loading")
    assert list(health.json()["not_ready_models"]) == ["hung/hung:1"]
    assert after == {"name": "hung", "ready": True, "resident": True}


def _until_ready(http: httpx.Client, name: str) -> dict[str, object]:
    """The model's readiness once it is ready: the router retries a cold one every 5 s."""
    deadline = time.monotonic() + 60
    while True:
        body = http.get(f"/v2/models/{name}/ready").json()
        if body.get("ready") or time.monotonic() > deadline:
            return body
        time.sleep(0.2)
