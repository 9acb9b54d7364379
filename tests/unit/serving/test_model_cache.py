"""The model cache with real scikit-learn models on disk: eviction under a budget (segmented
LRU: once-used models go before those used again), pins, warm-up, stage timings, the state file
`cloche models loaded` reads, and the metrics it feeds."""

from __future__ import annotations

import json
import os
import random
import threading
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from cloche.errors import HashMismatch, Unavailable
from cloche.serving.metrics import WorkerMetrics, publish, render
from cloche.serving.model_cache import ModelCache
from cloche.serving.model_load import warm_up_rows
from cloche.serving.residency import loaded_models, state_file, worker_budget
from cloche.serving.spec import DeploymentSpec
from cloche.store.artifacts import ArtifactStore, sha256_file

FEATURES = ["a", "b", "c"]
SIGNATURE = {
    "inputs": [{"name": n, "dtype": "float64", "shape": [-1]} for n in FEATURES],
    "input_kind": "tabular",
}
MB = 2**20


def _model_folder(root: Path, seed: int) -> Path:
    import pandas as pd

    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(50, 3)), columns=FEATURES)
    y = (X["a"] > 0).astype(int)
    folder = root / f"m{seed}"
    folder.mkdir()
    joblib.dump(LogisticRegression().fit(X, y), folder / "model.joblib")
    return folder


def _spec(folder: Path, seed: int, *, model: str | None = None) -> DeploymentSpec:
    path = folder / "model.joblib"
    digest = sha256_file(path)
    return DeploymentSpec(
        deployment_id=seed,
        endpoint=f"ep{seed}",
        model=model or f"m{seed}",
        version=1,
        framework="sklearn",
        artifact_key=str(folder),
        files={"model.joblib": {"sha256": digest, "size": path.stat().st_size}},
        sha256=digest,
        signature=SIGNATURE,
        traffic=100,
        shadow=False,
        max_batch_size=64,
        timeout_ms=1000,
    )


@pytest.fixture
def specs(tmp_path: Path) -> list[DeploymentSpec]:
    return [_spec(_model_folder(tmp_path, seed), seed) for seed in range(8)]


def _cache(budget: int | None, **options: object) -> ModelCache:
    # Every model counts as 100 MiB: the budget below is in whole models.
    return ModelCache(
        lambda spec: Path(spec.artifact_key),
        check=lambda spec, folder: ArtifactStore.verify(folder, spec.files, key="k"),
        budget_bytes=budget,
        size_of=lambda spec: 100 * MB,
        **options,  # type: ignore[arg-type]
    )


def test_the_least_recently_used_model_is_evicted_to_make_room(
    specs: list[DeploymentSpec],
) -> None:
    cache = _cache(250 * MB)
    a, b, c = specs[:3]
    cache.load(a)
    cache.load(b)
    with cache.pinned(a):  # a is now the most recently used
        pass
    cache.load(c)
    assert cache.get(a) is not None and cache.get(c) is not None
    assert cache.get(b) is None
    assert sum(cache.sizes().values()) <= 250 * MB


def _batch(cache: ModelCache, spec: DeploymentSpec) -> None:
    """One batch of one row, as a predict thread runs it: a use of the model."""
    with cache.pinned(spec) as model:
        assert model.predict(np.zeros((1, 3))).shape == (1,)


def test_a_hot_model_survives_a_run_of_one_off_models_that_lru_would_have_let_evict_it(
    specs: list[DeploymentSpec],
) -> None:
    cache = _cache(300 * MB)  # three models; the protected segment holds two
    hot, *one_offs = specs
    _batch(cache, hot)
    _batch(cache, hot)  # its second use: protected
    # Five models asked for once each, after the hot model's last use: plain LRU keeps the
    # three most recent, so the hot model would have gone at the third.
    for spec in one_offs[:5]:
        _batch(cache, spec)
    assert cache.get(hot) is not None
    loads = {m["model"]: m["loads"] for m in cache.state()["models"]}
    assert loads["m0"] == 1  # never reloaded
    assert [cache.get(s) is not None for s in one_offs[:5]] == [False, False, False, True, True]


def test_a_model_used_once_is_evicted_before_a_model_used_twice(
    specs: list[DeploymentSpec],
) -> None:
    cache = _cache(200 * MB)
    twice, once, newcomer = specs[:3]
    _batch(cache, twice)
    _batch(cache, twice)
    _batch(cache, once)  # more recent than ``twice``, but used once
    _batch(cache, newcomer)
    assert cache.get(twice) is not None and cache.get(newcomer) is not None
    assert cache.get(once) is None


def test_a_load_ahead_of_its_batch_and_a_warm_up_are_not_uses(
    specs: list[DeploymentSpec],
) -> None:
    # The batcher's cold path loads the model, then its batch pins it: one request, one use.
    # Counted as two, the first request of every model would protect it.
    cache = _cache(200 * MB)  # two models; the protected segment holds one
    hot, cold, warmed, newcomer = specs[:4]
    _batch(cache, hot)
    _batch(cache, hot)
    cache.load(cold)
    _batch(cache, cold)
    _batch(cache, newcomer)  # room for it: the once-used cold model goes, the hot one stays
    assert cache.get(hot) is not None and cache.get(cold) is None
    cache.evict({ModelCache.key(hot)})
    cache.warm(warmed)  # a deploy's warm-up, then its first request
    _batch(cache, warmed)
    _batch(cache, newcomer)
    assert cache.get(hot) is not None and cache.get(warmed) is None


def test_the_budget_is_never_exceeded_by_any_sequence_of_batches(
    specs: list[DeploymentSpec],
) -> None:
    budget = 350 * MB
    cache = _cache(budget)
    rng = random.Random(7)
    # A skewed stream, as the many-models benchmark sends: most batches to two models.
    for _ in range(120):
        spec = rng.choice(specs[:2]) if rng.random() < 0.7 else rng.choice(specs[2:])
        _batch(cache, spec)
        assert sum(cache.sizes().values()) <= budget
        assert cache.state()["used_bytes"] == sum(cache.sizes().values())


def test_a_pinned_model_is_never_evicted_while_a_batch_holds_it(
    specs: list[DeploymentSpec],
) -> None:
    cache = _cache(250 * MB)
    a, b, c = specs[:3]
    with cache.pinned(a) as held:
        cache.load(b)
        cache.load(c)  # needs room: b (idle) goes, not a (pinned), though a is older
        assert cache.get(a) is held
        assert cache.get(b) is None
        assert held.predict(np.zeros((1, 3))).shape == (1,)


def test_a_load_goes_over_the_budget_when_all_else_is_pinned_and_evicts_after(
    specs: list[DeploymentSpec],
) -> None:
    cache = _cache(150 * MB)
    a, b = specs[:2]
    with cache.pinned(a), cache.pinned(b) as model:  # never failed because of the budget
        assert model.predict(np.zeros((1, 3))).shape == (1,)
        assert set(cache.sizes()) == {ModelCache.key(a), ModelCache.key(b)}
    # b's pin went first, while a was still pinned: b was the one that could go.
    assert set(cache.sizes()) == {ModelCache.key(a)}


def test_an_evicted_model_is_loaded_again_on_its_next_batch(
    specs: list[DeploymentSpec],
) -> None:
    cache = _cache(100 * MB)
    a, b = specs[:2]
    cache.load(a)
    cache.load(b)
    assert cache.get(a) is None
    with cache.pinned(a) as model:
        assert model.predict(np.zeros((2, 3))).shape == (2,)
    state = {m["model"]: m for m in cache.state()["models"]}
    assert state["m0"]["loads"] == 2 and state["m0"]["evictions"] == 1
    assert state["m1"]["evictions"] == 1 and not state["m1"]["resident"]


def test_warm_loads_only_into_free_room_and_never_evicts(specs: list[DeploymentSpec]) -> None:
    cache = _cache(200 * MB)
    a, b, c = specs[:3]
    cache.warm(a)
    cache.warm(b)
    cache.warm(c)  # no room left: skipped, a and b stay
    assert cache.get(a) is not None and cache.get(b) is not None
    assert cache.get(c) is None


def test_without_a_budget_every_model_stays_until_undeployed(specs: list[DeploymentSpec]) -> None:
    cache = _cache(None)
    for spec in specs:
        cache.warm(spec)
    assert len(cache.sizes()) == len(specs)
    dropped = cache.evict({ModelCache.key(specs[0])})
    assert sorted(dropped) == sorted(ModelCache.key(s) for s in specs[1:])
    assert [m["model"] for m in cache.state()["models"]] == ["m0"]


def test_concurrent_batches_of_one_cold_model_load_it_once(specs: list[DeploymentSpec]) -> None:
    cache = _cache(None)
    seen: list[object] = []

    def batch() -> None:
        with cache.pinned(specs[0]) as model:
            seen.append(model)

    threads = [threading.Thread(target=batch) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(m) for m in seen}) == 1
    assert cache.state()["models"][0]["loads"] == 1


def test_each_load_is_timed_by_stage_into_the_metrics_histogram(
    specs: list[DeploymentSpec], tmp_path: Path
) -> None:
    metrics = WorkerMetrics()
    cache = _cache(None, on_stage=metrics.model_load_stage)
    cache.load(specs[0])
    stages = cache.state()["models"][0]["load_seconds"]
    assert set(stages) == {"fetch", "hash_check", "deserialise", "warm_up"}
    assert all(seconds >= 0 for seconds in stages.values())
    snap = metrics.snapshot({"cloche_model_load_seconds": {'deployment="ep0"': 1.0}})
    snap["pid"] = os.getpid()
    publish(tmp_path / "metrics", snap)
    text = render(tmp_path / "metrics")
    assert 'cloche_model_load_seconds_count{stage="deserialise"} 1' in text
    assert 'cloche_model_load_seconds_count{stage="warm_up"} 1' in text
    # The per-deployment gauge a router still reports is superseded by the histogram.
    assert "# TYPE cloche_model_load_seconds gauge" not in text


def test_a_model_whose_files_changed_fails_to_load_and_says_why(
    specs: list[DeploymentSpec],
) -> None:
    cache = _cache(None)
    (Path(specs[0].artifact_key) / "model.joblib").write_bytes(b"tampered")
    with pytest.raises(Unavailable) as failed, cache.pinned(specs[0]):
        pass
    assert failed.value.http_status == 503 and isinstance(failed.value.__cause__, HashMismatch)
    assert failed.value.message.startswith("model m0:1 cannot be loaded: artifact file")
    assert "upload the model again" in (failed.value.hint or "")
    state = cache.state()["models"][0]
    assert not state["resident"] and "does not match its recorded sha256" in state["last_error"]
    with cache.pinned(specs[1]) as other:  # the others keep loading and serving
        assert other.predict(np.zeros((1, 3))).shape == (1,)


def test_the_state_file_lists_resident_models_for_models_loaded(
    specs: list[DeploymentSpec], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    path = state_file(home, "server1", "w1")
    cache = _cache(150 * MB, state_file=path)
    try:
        cache.load(specs[0])
        cache.load(specs[1])
        written = json.loads(path.read_text())
        assert written["pid"] == os.getpid() and written["budget_bytes"] == 150 * MB
        rows = loaded_models(home)
        assert [(r["model"], r["server"], r["worker"]) for r in rows] == [
            ("m1", "server1", os.getpid())
        ]
        assert rows[0]["size_bytes"] == 100 * MB and rows[0]["loads"] == 1
        assert [r["model"] for r in loaded_models(home, resident_only=False)] == ["m0", "m1"]
        assert worker_budget(home) == 150 * MB
        text = render(home / "run" / "server1" / "metrics")
        labels = f'model="m1",version="1",worker="{os.getpid()}"'
        assert f"cloche_model_resident_bytes{{{labels}}} {100 * MB}" in text
        assert 'cloche_model_evictions_total{model="m0"' in text
    finally:
        cache.close()
    assert loaded_models(home) == [] and worker_budget(home) is None


def test_a_dead_workers_state_file_is_ignored(tmp_path: Path) -> None:
    path = state_file(tmp_path, "server1", "w1")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pid": 2**22 + 12345, "budget_bytes": 1, "models": []}))
    assert worker_budget(tmp_path) is None


def test_warm_up_rows_come_from_numeric_tabular_signatures_only() -> None:
    row = warm_up_rows(SIGNATURE)
    assert row.shape == (1, len(FEATURES))  # what the data plane hands the model: no pandas
    assert warm_up_rows({"inputs": [{"name": "s", "dtype": "string"}]}) is None
    assert (
        warm_up_rows({"inputs": [{"name": "t", "dtype": "float32"}], "input_kind": "tensor"})
        is None
    )
    assert warm_up_rows({}) is None
