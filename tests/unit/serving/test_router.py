"""The router with real scikit-learn models on disk and a real model cache: a deployment is
ready only once it answered its warm-up, one that failed takes no traffic from a warm one, and
readiness under a memory budget says when a model loads on demand."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from cloche.errors import DeploymentNotFound
from cloche.serving.model_cache import ModelCache
from cloche.serving.router import EndpointRoute, Router
from cloche.serving.spec import DeploymentSpec, Snapshot
from cloche.store.artifacts import ArtifactStore, sha256_file

FEATURES = ["a", "b", "c"]
SIGNATURE = {
    "inputs": [{"name": n, "dtype": "float64", "shape": [-1]} for n in FEATURES],
    "outputs": [{"name": "predict", "dtype": "int64", "shape": [-1]}],
    "input_kind": "tabular",
}


class Source:
    """A fixed serving state, as the metadata store or an edge bundle would give."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.current = snapshot

    def generation(self) -> int:
        return self.current.generation

    def snapshot(self) -> Snapshot:
        return self.current


def _spec(root: Path, version: int, *, traffic: int, signature: dict[str, Any] = SIGNATURE):
    folder = root / f"v{version}"
    folder.mkdir()
    rng = np.random.default_rng(version)
    X = pd.DataFrame(rng.normal(size=(40, 3)), columns=FEATURES)
    path = folder / "model.joblib"
    joblib.dump(LogisticRegression().fit(X, (X["a"] > 0).astype(int)), path)
    digest = sha256_file(path)
    return DeploymentSpec(
        deployment_id=version,
        endpoint="churn",
        model="churn",
        version=version,
        framework="sklearn",
        artifact_key=str(folder),
        files={"model.joblib": {"sha256": digest, "size": path.stat().st_size}},
        sha256=digest,
        signature=signature,
        traffic=traffic,
        shadow=False,
        max_batch_size=64,
        timeout_ms=1000,
    )


def _router(specs: list[DeploymentSpec], **cache_options: Any) -> Router:
    cache = ModelCache(
        lambda spec: Path(spec.artifact_key),
        check=lambda spec, folder: ArtifactStore.verify(folder, spec.files, key=spec.ref),
        **cache_options,
    )
    return Router(Source(Snapshot(1, {"churn": specs})), cache)


def _corrupt(spec: DeploymentSpec) -> None:
    (Path(spec.artifact_key) / "model.joblib").write_bytes(b"changed behind cloche's back")


def _picked(route: EndpointRoute, n: int = 300) -> set[int]:
    return {route.choose().spec.version for _ in range(n)}


def test_a_canary_that_fails_to_load_leaves_all_traffic_to_the_warm_stable(tmp_path: Path) -> None:
    stable, canary = _spec(tmp_path, 1, traffic=90), _spec(tmp_path, 2, traffic=10)
    _corrupt(canary)
    router = _router([stable, canary])
    asyncio.run(router.refresh())
    route = router.endpoint("churn")
    assert _picked(route) == {1}
    assert router.endpoint_readiness("churn").ready
    canary_state = router.endpoint_readiness("churn", "2")
    assert not canary_state.ready
    assert canary_state.reason is not None
    assert canary_state.reason.startswith("model churn:2 cannot be loaded: artifact file")
    assert list(router.not_ready()) == ["churn/churn:2"]
    assert router.ready  # the server serves: the failure is the canary's alone


def test_an_endpoint_whose_only_deployment_failed_keeps_it_and_is_not_ready(
    tmp_path: Path,
) -> None:
    only = _spec(tmp_path, 1, traffic=100)
    _corrupt(only)
    router = _router([only])
    asyncio.run(router.refresh())
    # Still routed: its requests get the cache's 503 naming the reason, not a 404.
    assert _picked(router.endpoint("churn"), 5) == {1}
    state = router.endpoint_readiness("churn")
    assert not state.ready and "sha256" in (state.reason or "")


def test_a_model_that_cannot_answer_its_warm_up_is_not_ready(tmp_path: Path) -> None:
    # The signature names columns the model was not fitted on: its warm-up prediction fails.
    wrong = {**SIGNATURE, "inputs": [{"name": "x", "dtype": "float64", "shape": [-1]}]}
    stable, canary = _spec(tmp_path, 1, traffic=50), _spec(tmp_path, 2, traffic=50, signature=wrong)
    router = _router([stable, canary])
    asyncio.run(router.refresh())
    state = router.endpoint_readiness("churn", "2")
    assert not state.ready
    assert (state.reason or "").startswith(
        "model churn:2 cannot be loaded: its warm-up prediction failed: "
    )
    assert not router.cache.resident(ModelCache.key(canary))
    assert _picked(router.endpoint("churn")) == {1}


def test_a_fixed_canary_is_warmed_again_and_then_takes_its_share(tmp_path: Path) -> None:
    stable, canary = _spec(tmp_path, 1, traffic=50), _spec(tmp_path, 2, traffic=50)
    good = (Path(canary.artifact_key) / "model.joblib").read_bytes()
    _corrupt(canary)
    router = _router([stable, canary])
    router.retry_seconds = 0.0
    asyncio.run(router.refresh())
    assert _picked(router.endpoint("churn")) == {1}
    (Path(canary.artifact_key) / "model.joblib").write_bytes(good)
    assert asyncio.run(router.refresh())  # same generation: the retry rebuilt the table
    assert router.cold == {}
    assert router.endpoint_readiness("churn", "2").resident
    assert _picked(router.endpoint("churn")) == {1, 2}


def test_a_model_left_out_by_the_budget_is_ready_and_loads_on_demand(tmp_path: Path) -> None:
    spec = _spec(tmp_path, 1, traffic=100)
    # A budget smaller than the model: warming skips it, the first request would load it.
    router = _router([spec], budget_bytes=1, size_of=lambda s: 1000)
    asyncio.run(router.refresh())
    state = router.endpoint_readiness("churn")
    assert (state.ready, state.resident, state.reason) == (True, False, None)
    assert state.to_dict("churn") == {"name": "churn", "ready": True, "resident": False}


def test_a_stored_sample_is_the_warm_up_prediction_when_there_is_one(tmp_path: Path) -> None:
    # A signature the cache cannot make a row from (a string column): only the sample warms.
    text = {**SIGNATURE, "inputs": [{"name": "a", "dtype": "string", "shape": [-1]}]}
    spec = _spec(tmp_path, 1, traffic=100, signature=text)
    asked: list[str] = []

    def sample(s: DeploymentSpec) -> pd.DataFrame:
        asked.append(s.ref)
        return pd.DataFrame(np.ones((4, 3)), columns=FEATURES)

    router = _router([spec], sample=sample)
    asyncio.run(router.refresh())
    assert asked == ["churn:1"]
    (state,) = router.cache.state()["models"]
    assert "warm_up" in state["load_seconds"]
    assert router.endpoint_readiness("churn").resident


def test_a_sample_the_model_refuses_fails_its_warm_up(tmp_path: Path) -> None:
    spec = _spec(tmp_path, 1, traffic=100)
    router = _router([spec], sample=lambda s: pd.DataFrame({"zzz": [1.0]}))
    asyncio.run(router.refresh())
    state = router.endpoint_readiness("churn")
    assert not state.ready and "warm-up prediction failed" in (state.reason or "")


def test_readiness_of_a_version_the_endpoint_does_not_serve_names_what_it_does(
    tmp_path: Path,
) -> None:
    router = _router([_spec(tmp_path, 1, traffic=100)])
    asyncio.run(router.refresh())
    with pytest.raises(DeploymentNotFound, match=r"serves no version '7' \(deployed: churn:1\)"):
        router.endpoint_readiness("churn", "7")


def test_a_shadow_never_takes_traffic_even_when_the_live_one_failed(tmp_path: Path) -> None:
    live = _spec(tmp_path, 1, traffic=100)
    shadow = replace(_spec(tmp_path, 2, traffic=0), shadow=True)
    _corrupt(live)
    router = _router([live, shadow])
    asyncio.run(router.refresh())
    assert _picked(router.endpoint("churn"), 20) == {1}


def test_a_hung_load_stops_neither_the_table_nor_the_warm_stable_and_warms_once_done(
    tmp_path: Path,
) -> None:
    import threading

    stable, slow = _spec(tmp_path, 1, traffic=90), _spec(tmp_path, 2, traffic=10)
    release = threading.Event()
    fetches: list[int] = []

    def locate(spec: DeploymentSpec) -> Path:
        fetches.append(spec.version)
        if spec.version == 2:  # its files take as long as the test says (a hung fetch)
            release.wait(30)
        return Path(spec.artifact_key)

    router = Router(
        # Room for the stable one's load on a loaded machine; the hung one costs this once.
        Source(Snapshot(1, {"churn": [stable, slow]})),
        ModelCache(locate),
        load_wait_seconds=3,
    )
    router.retry_seconds = 0.0

    async def main() -> None:
        await router.refresh()  # returns although version 2's load has not
        assert router.ready
        assert _picked(router.endpoint("churn")) == {1}
        state = router.endpoint_readiness("churn", "2")
        assert not state.ready and not state.resident
        assert (state.reason or "").startswith("model churn:2 is still loading (")
        assert list(router.not_ready()) == ["churn/churn:2"]
        await router.refresh()  # a retry does not start a second load: it does not wait
        assert "churn/churn:2" in router.not_ready()
        release.set()
        while not router.cache.resident(ModelCache.key(slow)):
            await asyncio.sleep(0.01)
        await router.refresh()  # the retry finds it warm: it takes its share
        assert router.not_ready() == {}
        assert _picked(router.endpoint("churn")) == {1, 2}

    asyncio.run(main())
    assert fetches.count(2) == 1  # one load, however many retries


def test_traffic_moved_to_a_model_still_loading_stays_on_the_warm_one_until_it_loads(
    tmp_path: Path,
) -> None:
    import threading

    stable, slow = _spec(tmp_path, 1, traffic=100), _spec(tmp_path, 2, traffic=100)
    release = threading.Event()

    def locate(spec: DeploymentSpec) -> Path:
        if spec.version == 2:
            release.wait(30)
        return Path(spec.artifact_key)

    source = Source(Snapshot(1, {"churn": [stable]}))
    router = Router(source, ModelCache(locate), load_wait_seconds=3)
    router.retry_seconds = 0.0

    async def main() -> None:
        await router.refresh()
        # The deploy moves all traffic to version 2, whose load outlasts the wait.
        source.current = Snapshot(2, {"churn": [replace(stable, traffic=0), slow]})
        await router.refresh()
        assert router.generation == 2
        assert _picked(router.endpoint("churn")) == {1}  # the old table, until 2 is warm
        assert list(router.not_ready()) == ["churn/churn:2"]
        assert router.cache.resident(ModelCache.key(stable))  # not evicted meanwhile
        release.set()
        while not router.cache.resident(ModelCache.key(slow)):
            await asyncio.sleep(0.01)
        await router.refresh()
        assert _picked(router.endpoint("churn")) == {2}
        assert router.not_ready() == {}

    asyncio.run(main())
