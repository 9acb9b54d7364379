"""A monitor's stored results over time: a feature's distances per run, and its histogram."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import cloche
from cloche.auth.roles import LOCAL_USER
from cloche.config import Settings
from cloche.endpoints import service as endpoints
from cloche.errors import BadRequest, FeatureNotFound, MonitorNotFound, MonitorRunNotFound
from cloche.monitoring import history, runs, service
from cloche.monitoring.entities import MonitorConfig
from cloche.registry.inspection import inspect_here
from cloche.registry.upload import upload_model
from cloche.store.store import Store
from tests.integration import test_monitors as monitored
from tests.integration.conftest import LiveServer, ServerFactory

NOW = monitored.NOW


@pytest.fixture
def watched(settings: Settings, sklearn_model_file: Path, tmp_path: Path) -> Iterator[Store]:
    """churn:1 with a N(0, 1) baseline, monitored hourly for three hours; in the third,
    ``spend`` moved by two standard deviations."""
    rng = np.random.default_rng(0)
    baseline = tmp_path / "baseline.parquet"
    pq.write_table(pa.table({f: rng.normal(size=5_000) for f in monitored.FEATURES}), baseline)
    store = Store.open(settings)
    upload_model(
        store,
        principal=LOCAL_USER,
        inspector=inspect_here,
        source=sklearn_model_file,
        name="churn",
        baseline=baseline,
    )
    endpoints.create_endpoint(store, name="churn")
    endpoints.deploy(store, endpoint="churn", ref="churn:1")
    service.create_monitor(store, endpoint="churn", config=MonitorConfig())
    for hour, shift in ((3, {}), (2, {}), (1, {"spend": 2.0})):
        start = NOW - timedelta(hours=hour)
        monitored.log_traffic(store, start, 500, shift)
        runs.run_monitor(store, "churn", settings=settings, now=start + timedelta(hours=1))
    yield store
    store.close()


def test_a_features_distances_come_per_run_with_their_thresholds(watched: Store) -> None:
    found = history.feature_history(watched, "churn", "spend")
    assert [p.window_end for p in found.points] == [NOW - timedelta(hours=h) for h in (2, 1, 0)]
    skew = [p.skew for p in found.points]
    assert all(s is not None and s.threshold == 0.3 and s.metric == "js" for s in skew)
    assert [s.breached for s in skew if s] == [False, False, True]
    assert found.points[0].drift is None  # the first run had no previous window
    assert found.points[-1].drift is not None and found.points[-1].drift.breached
    assert history.feature_history(watched, "churn", "spend", limit=1).points == found.points[-1:]


def test_a_runs_histogram_puts_both_sides_on_the_baselines_bins(watched: Store) -> None:
    latest = history.feature_histogram(watched, "churn", "spend")
    assert latest.kind == "numeric" and latest.edges is not None and len(latest.edges) == 9
    assert len(latest.baseline) == len(latest.window) == 10
    assert sum(latest.baseline) == pytest.approx(1) and sum(latest.window) == pytest.approx(1)
    assert latest.baseline == pytest.approx([0.1] * 10, abs=0.02)  # deciles of itself
    assert latest.window[-1] > 0.5  # moved up by two std: most of it above the top decile
    assert (latest.baseline_rows, latest.window_rows) == (5_000, 500)
    first_run = history.feature_history(watched, "churn", "spend").points[0].run
    earlier = history.feature_histogram(watched, "churn", "spend", run=first_run)
    assert earlier.run == first_run and earlier.window[-1] < 0.2


def test_bad_requests_say_what_exists(watched: Store) -> None:
    with pytest.raises(FeatureNotFound, match="'nope'") as missing:
        history.feature_history(watched, "churn", "nope")
    assert "spend" in (missing.value.hint or "")
    with pytest.raises(FeatureNotFound):
        history.feature_histogram(watched, "churn", "nope")
    with pytest.raises(MonitorRunNotFound):
        history.feature_histogram(watched, "churn", "spend", run=10_000)
    with pytest.raises(MonitorNotFound):
        history.feature_history(watched, "other", "spend")
    for limit in (0, -1, 5001):
        with pytest.raises(BadRequest, match="limit"):
            history.feature_history(watched, "churn", "spend", limit=limit)


def test_the_sdk_reads_them_both_ways(watched: Store, client: cloche.Client) -> None:
    found = client.monitors.feature_history("churn", "spend", limit=2)
    assert len(found.points) == 2 and found.points[-1].skew and found.points[-1].skew.breached
    shown = client.monitors.feature_histogram("churn", "spend", run=found.points[0].run)
    assert shown.run == found.points[0].run and shown.kind == "numeric"
    with pytest.raises(MonitorRunNotFound):
        client.monitors.feature_histogram("churn", "spend", run=10_000)


def test_over_rest_a_token_comes_first_and_bad_inputs_are_4xx(
    watched: Store, start_server: ServerFactory
) -> None:
    server: LiveServer = start_server()
    base = f"{server.url}/api/v1/monitors/churn/features/spend"
    assert httpx.get(f"{base}/history").status_code == 401
    assert httpx.get(f"{base}/history", headers=server.auth).status_code == 200
    for params, status in (
        ({"limit": 0}, 400),
        ({"limit": "many"}, 422),
    ):
        assert (
            httpx.get(f"{base}/history", params=params, headers=server.auth).status_code == status
        )
    for params, status in (({"run": 10_000}, 404), ({"run": "x"}, 422)):
        r = httpx.get(f"{base}/histogram", params=params, headers=server.auth)
        assert r.status_code == status
    r = httpx.get(f"{server.url}/api/v1/monitors/churn/features/nope/history", headers=server.auth)
    assert r.status_code == 404 and r.json()["error"]["code"] == "feature_not_found"
