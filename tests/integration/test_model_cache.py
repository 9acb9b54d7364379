"""Many models under a memory budget, through a real server: the deploy-time refusal, the
resident size recorded on the version, `models loaded` (SDK both ways, REST, CLI), the load
stages in /metrics and `endpoints show`, and bad --model-memory forms."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

import cloche
from cloche.auth import tokens
from cloche.config import Settings
from cloche.errors import InvalidInput
from cloche.registry.entities import ResidentModel
from cloche.store.store import Store
from tests.e2e._cli import cloche as cli
from tests.integration.conftest import LiveServer, ServerFactory

FEATURES = ["tenure", "spend", "visits", "age"]


@pytest.fixture(scope="module")
def frame() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(2000, 4)), columns=FEATURES)
    noise = rng.normal(size=2000)  # noisy labels grow deep trees: a forest of some MiB
    return X, (X["tenure"] + X["spend"] + noise > 0).astype(int).to_numpy()


@pytest.fixture
def forest_file(tmp_path: Path, frame: tuple[pd.DataFrame, np.ndarray]) -> Path:
    """A model of a few MiB once loaded: 60 unpruned trees."""
    X, y = frame
    path = tmp_path / "forest.joblib"
    joblib.dump(RandomForestClassifier(n_estimators=60, random_state=0).fit(X, y), path)
    return path


@pytest.fixture
def small_file(tmp_path: Path, frame: tuple[pd.DataFrame, np.ndarray]) -> Path:
    X, y = frame
    path = tmp_path / "small.joblib"
    joblib.dump(LogisticRegression().fit(X, y), path)
    return path


@pytest.fixture
def sdk(settings: Settings, forest_file: Path, small_file: Path) -> cloche.Client:
    """forest:1 and small:1 registered (in-process, so neither is measured yet), one endpoint
    for each."""
    client = cloche.Client(settings=settings)
    client.models.upload(forest_file, name="forest")
    client.models.upload(small_file, name="small")
    client.endpoints.create("forest")
    client.endpoints.create("small")
    return client


def _serve(start_server: ServerFactory, memory: str) -> LiveServer:
    return start_server(serving={"model_memory": memory, "workers": 1, "poll_ms": 100})


def test_a_model_larger_than_a_workers_share_is_refused_at_deploy_naming_both_sizes(
    sdk: cloche.Client, start_server: ServerFactory
) -> None:
    server = _serve(start_server, "1MiB")
    assert sdk.models.show("forest:1").resident_bytes is None
    with cloche.Client(server.url) as remote, pytest.raises(InvalidInput) as refused:
        remote.endpoints.deploy("forest", "forest:1")
    message = refused.value.message
    measured = sdk.models.show("forest:1").resident_bytes  # measured then, and recorded
    assert measured is not None and measured > 2**20
    assert "forest:1 takes" in message and "MiB" in message and "1 MiB each worker" in message
    assert "--model-memory" in (refused.value.hint or "")
    # An in-process deploy beside the server sees the server's budget too.
    with pytest.raises(InvalidInput, match="each worker may hold"):
        sdk.endpoints.deploy("forest", "forest:1")
    assert sdk.endpoints.get("forest").deployments == []
    # The model show prints the size.
    result = cli("models", "show", "forest:1")
    assert result.exit_code == 0, result.output
    assert "in memory" in result.stdout


def test_models_loaded_shows_each_workers_models_with_loads_and_stage_times(
    sdk: cloche.Client, start_server: ServerFactory, frame: tuple[pd.DataFrame, np.ndarray]
) -> None:
    # No budget: nothing is measured at deploy (a child process each), sizes are the files'.
    sdk.endpoints.deploy("forest", "forest:1")
    sdk.endpoints.deploy("small", "small:1")
    server = start_server(serving={"workers": 1, "poll_ms": 100})
    with cloche.Client(server.url) as remote:
        X, _ = frame
        rows = X.head(3).to_numpy().tolist()
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for name in ("forest", "small"):
                r = http.post(f"/v1/models/{name}:predict", json={"instances": rows})
                assert r.status_code == 200, r.text
            for sdk_client in (remote, sdk):  # over HTTP, and in-process on the same home
                loaded = {m.ref: m for m in _wait_loaded(sdk_client, {"forest:1", "small:1"})}
                forest = loaded["forest:1"]
                assert forest.worker == os.getpid() and forest.loads == 1
                assert forest.evictions == 0 and forest.resident
                assert forest.size_bytes == sdk.models.show("forest:1").size_bytes
                assert set(forest.load_seconds) == {"fetch", "hash_check", "deserialise", "warm_up"}
            metrics = http.get("/metrics").text
    assert 'cloche_model_load_seconds_count{stage="deserialise"} 2' in metrics
    assert 'cloche_model_resident_bytes{model="forest",version="1"' in metrics
    assert "cloche_model_memory_used_bytes" in metrics
    table = cli("models", "loaded", env={"CLOCHE_URL": server.url})
    assert table.exit_code == 0, table.output
    assert "forest:1" in table.stdout and "small:1" in table.stdout
    shown = cli("endpoints", "show", "forest", "--json")
    assert shown.exit_code == 0, shown.output
    last = json.loads(shown.stdout)["last_loads"]
    assert [r["model"] for r in last] == ["forest"] and "deserialise" in last[0]["load_seconds"]


def test_readers_may_list_loaded_models_over_rest(live_server: LiveServer) -> None:
    store = Store.open(live_server.settings)
    try:
        viewer = tokens.create_token(store, role="viewer", name="test viewer").token
    finally:
        store.close()
    url = f"{live_server.url}/api/v1/models/loaded"
    answer = httpx.get(url, headers={"Authorization": f"Bearer {viewer}"})
    assert answer.status_code == 200 and answer.json() == []
    assert httpx.get(url).status_code == 401


@pytest.mark.parametrize(
    ("form", "says"),
    [
        ("lots", "'lots' is not a memory size"),
        ("4 gigs", "is not a memory size"),
        ("0", "more than 0 bytes"),
        ("-1GiB", "is not a memory size"),
        ("9999999TiB", "more than 1 PiB"),
    ],
)
def test_bad_model_memory_forms_are_refused_before_the_server_starts(form: str, says: str) -> None:
    result = cli("up", "--model-memory", form, "--port", "0")
    assert result.exit_code == 2, result.output
    assert says in result.output and "4GiB" in result.output


def test_cloche_up_refuses_a_budget_too_small_for_the_deployed_models_naming_them(
    sdk: cloche.Client,
) -> None:
    sdk.endpoints.deploy("forest", "forest:1")
    sdk.endpoints.deploy("small", "small:1")
    result = cli("up", "--model-memory", "1KiB", "--port", "0", "--workers", "2")
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "--model-memory 1 KiB leaves 512 B to each of 2 worker(s)" in text
    assert "forest:1 (" in text and "small:1 (" in text  # each with its size
    assert "start with --model-memory" in text and "MiB or more" in text


def test_a_bad_model_memory_setting_names_its_variable() -> None:
    result = cli("up", "--port", "0", env={"CLOCHE_SERVING__MODEL_MEMORY": "huge"})
    assert result.exit_code == 2, result.output
    assert "CLOCHE_SERVING__MODEL_MEMORY" in result.output and "4GiB" in result.output


def test_an_evicted_model_is_loaded_again_by_its_next_request(
    sdk: cloche.Client,
    start_server: ServerFactory,
    frame: tuple[pd.DataFrame, np.ndarray],
    tmp_path: Path,
) -> None:
    X, y = frame
    other = RandomForestClassifier(n_estimators=60, random_state=1).fit(X, 1 - y)
    joblib.dump(other, tmp_path / "other.joblib")
    sdk.models.upload(tmp_path / "other.joblib", name="small")  # small:2, another forest
    sdk.endpoints.deploy("forest", "forest:1")
    sdk.endpoints.deploy("small", "small:2")
    # Room for one forest only (each counts at its file size: neither was measured).
    budget = int(sdk.models.show("forest:1").size_bytes * 1.2)
    server = start_server(
        serving={"model_memory": str(budget), "workers": 1, "poll_ms": 100, "server_timing": True}
    )
    rows = X.head(3)
    expected = {
        "forest": joblib.load(tmp_path / "forest.joblib").predict(rows).tolist(),
        "small": other.predict(rows).tolist(),
    }
    cold = []
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for name in ("forest", "small", "forest", "small"):
            r = http.post(f"/v1/models/{name}:predict", json={"instances": rows.values.tolist()})
            assert r.status_code == 200, r.text
            assert r.json()["predictions"] == expected[name]
            cold.append("load;dur=" in r.headers["server-timing"])
        metrics = http.get("/metrics").text
    # forest was warmed at start; after it, each request found its model evicted by the last.
    assert cold == [False, True, True, True]
    # /metrics carries the same counts as `models loaded`, per model and worker.
    worker = f'worker="{os.getpid()}"'
    assert f'cloche_model_loads_total{{model="forest",version="1",{worker}}} 2' in metrics
    assert f'cloche_model_evictions_total{{model="forest",version="1",{worker}}} 2' in metrics
    assert f'cloche_model_loads_total{{model="small",version="2",{worker}}} 2' in metrics
    assert f'cloche_model_evictions_total{{model="small",version="2",{worker}}} 1' in metrics
    assert f'cloche_model_last_used_seconds{{model="small",version="2",{worker}}}' in metrics
    assert f"cloche_model_memory_budget_bytes{{{worker}}} {budget}" in metrics
    loaded = {m.ref: m for m in sdk.models.loaded(all=True)}
    assert (loaded["forest:1"].loads, loaded["forest:1"].evictions) == (2, 2)
    assert (loaded["small:2"].loads, loaded["small:2"].evictions) == (2, 1)
    assert [m.ref for m in sdk.models.loaded()] == ["small:2"]  # the one resident now


def test_a_model_that_fails_to_load_gets_503_naming_it_while_others_serve(
    sdk: cloche.Client,
    start_server: ServerFactory,
    frame: tuple[pd.DataFrame, np.ndarray],
    settings: Settings,
) -> None:
    sdk.endpoints.deploy("forest", "forest:1")
    sdk.endpoints.deploy("small", "small:1")
    stored = next((settings.home / "artifacts").rglob("forest.joblib"))
    stored.write_bytes(b"changed behind cloche's back")
    server = start_server(serving={"workers": 1, "poll_ms": 100})
    rows = frame[0].head(3).to_numpy().tolist()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        failed = http.post("/v1/models/forest:predict", json={"instances": rows})
        served = http.post("/v1/models/small:predict", json={"instances": rows})
    assert failed.status_code == 503, failed.text
    error = failed.json()["error"]
    assert error["message"].startswith("model forest:1 cannot be loaded: artifact file")
    assert "sha256" in error["message"] and "upload the model again" in error["hint"]
    assert served.status_code == 200, served.text
    (forest,) = [m for m in sdk.models.loaded(all=True) if m.model == "forest"]
    assert not forest.resident and "sha256" in (forest.last_error or "")


def _wait_loaded(client: cloche.Client, refs: set[str]) -> list[ResidentModel]:
    """The state file is written at each load: it names both as soon as both answered."""
    loaded = client.models.loaded()
    assert {m.ref for m in loaded} >= refs, loaded
    return loaded
