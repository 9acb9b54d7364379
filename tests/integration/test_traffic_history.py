"""Endpoint traffic history: sampled counters in the store, per deployment, over REST and SDK."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

import cloche
from cloche.auth import tokens
from cloche.endpoints.service import create_endpoint
from cloche.monitoring.traffic import endpoint_traffic
from cloche.monitoring.traffic_maths import Counts
from cloche.monitoring.traffic_samples import record_sample, tidy
from cloche.store.store import Store
from cloche.store.tables import TrafficSampleRow, utcnow
from tests.integration.conftest import LiveServer, ServerFactory

NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)  # a fixed clock: no test reads today's date
BUCKETS = 13


def counts(ok: int, client: int = 0, server: int = 0) -> Counts:
    latency = [0] * BUCKETS
    latency[2] = ok + client + server  # every request in (2.5 ms, 5 ms]
    return Counts(ok, client, server, tuple(latency))


def sample(store: Store, source: str, seconds_ago: float, **per_deployment: Counts) -> None:
    totals = {("churn", ref.replace("_", ":")): c for ref, c in per_deployment.items()}
    at = NOW - timedelta(seconds=seconds_ago)
    record_sample(store, source=source, totals=totals, at=at, resolution_s=10)


@pytest.fixture
def churn(any_store: Store) -> Store:
    create_endpoint(any_store, name="churn")
    return any_store


def series(store: Store, window: str = "1h") -> dict[str, list[int | None]]:
    found = endpoint_traffic(store, "churn", window, now=NOW)
    return {d.deployment: d.requests for d in found.deployments}


def test_two_servers_on_one_store_add_up(churn: Store) -> None:
    for source, per_sample in (("host-a:1", 10), ("host-b:7", 3)):
        for i in range(4):
            sample(churn, source, 30 - 10 * i, churn_1=counts(per_sample * i))
    found = endpoint_traffic(churn, "churn", "1h", now=NOW)
    one = found.deployments[0]
    assert one.deployment == "churn:1"
    assert one.requests[-3:] == [13, 13, 13] and one.total_requests == 39
    assert one.requests_per_s[-1] == pytest.approx(1.3)
    assert one.requests[0] is None  # no sample covers it: unknown, not zero
    assert len(found.times) == 360 and found.times[-1] == NOW and found.step_s == 10


def test_a_restarted_server_never_gives_a_negative_rate(churn: Store) -> None:
    for seconds_ago, ok in ((40, 500), (30, 520), (20, 4), (10, 9), (0, 9)):
        sample(churn, "host-a:1", seconds_ago, churn_1=counts(ok))
    assert series(churn)["churn:1"][-4:] == [20, 4, 5, 0]


def test_deployments_error_rates_and_quantiles_are_apart(churn: Store) -> None:
    sample(churn, "a:1", 10, churn_1=counts(0), churn_2=counts(0))
    sample(churn, "a:1", 0, churn_1=counts(90, client=6, server=4), churn_2=counts(10))
    found = {d.deployment: d for d in endpoint_traffic(churn, "churn", now=NOW).deployments}
    assert found["churn:1"].client_error_rate[-1] == pytest.approx(0.06)
    assert found["churn:1"].server_error_rate[-1] == pytest.approx(0.04)
    assert found["churn:2"].server_error_rate[-1] == 0
    # All in the (2.5 ms, 5 ms] bucket: the median is its middle, by interpolation.
    assert found["churn:2"].p50_s[-1] == pytest.approx(0.00375)
    assert found["churn:1"].p99_s[-1] == pytest.approx(0.0025 + 0.0025 * 0.99)


def test_the_day_view_adds_up_ten_second_samples_per_minute(churn: Store) -> None:
    for i in range(13):
        sample(churn, "a:1", 120 - 10 * i, churn_1=counts(i))
    day = endpoint_traffic(churn, "churn", "1d", now=NOW).deployments[0]
    assert day.requests[-2:] == [6, 6] and len(day.requests) == 1440


def test_thinning_old_samples_keeps_the_totals_and_restarts(churn: Store) -> None:
    ok = 0
    for i in range(60):  # ten minutes, two hours ago, with a restart in the middle
        ok = 1 if i == 31 else ok + 5
        sample(churn, "a:1", 7800 - 10 * i, churn_1=counts(ok))
    before = sum(n or 0 for n in series(churn, "1d")["churn:1"])
    tidy(churn, source="a:1", now=NOW)
    with churn.transaction() as session:
        rows = session.scalar(select(func.count()).select_from(TrafficSampleRow))
    assert rows is not None and rows <= 12  # one a minute, and the one before the restart
    assert sum(n or 0 for n in series(churn, "1d")["churn:1"]) == before


def test_samples_older_than_a_day_are_deleted(churn: Store) -> None:
    sample(churn, "a:1", 2 * 86400, churn_1=counts(1))
    sample(churn, "b:1", 2 * 86400, churn_1=counts(1))
    tidy(churn, source="a:1", now=NOW)
    with churn.transaction() as session:
        left = session.scalars(select(TrafficSampleRow.source)).all()
    assert left == ["b:1"]  # a server tidies only its own samples


def test_a_bad_window_names_the_allowed_ones(churn: Store) -> None:
    with pytest.raises(cloche.errors.BadRequest, match="1h, 1d"):
        endpoint_traffic(churn, "churn", "7d")


def test_an_unknown_endpoint_is_not_found(any_store: Store) -> None:
    with pytest.raises(cloche.errors.EndpointNotFound):
        endpoint_traffic(any_store, "nope", "1h")


@pytest.fixture
def canary(settings, sklearn_model_file: Path, start_server: ServerFactory) -> LiveServer:
    sdk = cloche.Client(settings=settings)
    sdk.models.upload(sklearn_model_file, name="churn")
    sdk.models.upload(sklearn_model_file, name="churn")
    sdk.endpoints.create("churn")
    sdk.endpoints.deploy("churn", "churn:1")
    sdk.endpoints.deploy("churn", "churn:2", traffic=10)
    return start_server(serving={"poll_ms": 100, "traffic_sample_seconds": 0.2})


def _wait_for_total(sdk: cloche.Client, expected: int) -> dict[str, int]:
    deadline = time.monotonic() + 30  # a bound on waiting, not a measurement
    while True:
        found = sdk.endpoints.traffic_series("churn", window="1h")
        totals = {d.deployment: d.total_requests for d in found.deployments}
        if sum(totals.values()) >= expected or time.monotonic() > deadline:
            return totals
        time.sleep(0.2)


def test_a_servers_predictions_show_per_deployment(canary: LiveServer, iris_like) -> None:
    n = 200
    with httpx.Client(base_url=canary.url, timeout=10) as http:
        for row in iris_like[0][:n]:
            r = http.post("/v1/models/churn:predict", json={"instances": [row.tolist()]})
            assert r.status_code == 200, r.text
    with cloche.Client(canary.url) as sdk:
        totals = _wait_for_total(sdk, n)
    assert sum(totals.values()) == n
    assert totals["churn:1"] > totals["churn:2"] > 0  # 90/10, both seen


def test_traffic_over_rest_checks_token_role_and_window(canary: LiveServer) -> None:
    url = f"{canary.url}/api/v1/endpoints/churn/traffic"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer nope"}).status_code == 401
    store = Store.open(canary.settings)
    try:
        viewer = tokens.create_token(store, role="viewer", name="charts").token
    finally:
        store.close()
    auth = {"Authorization": f"Bearer {viewer}"}
    assert httpx.get(url, headers=auth, params={"window": "1d"}).json()["step_s"] == 60
    for bad in ("7d", "", "1H", "1h; drop"):
        r = httpx.get(url, headers=auth, params={"window": bad})
        assert r.status_code == 400, bad
        assert "1h, 1d" in r.json()["error"]["message"]
    r = httpx.get(f"{canary.url}/api/v1/endpoints/nope/traffic", headers=auth)
    assert r.status_code == 404


def test_the_sdk_gives_the_same_series_both_ways(client: cloche.Client, settings) -> None:
    client.endpoints.create("churn")
    store = Store.open(settings)
    now = utcnow()  # the SDK reads the last hour up to now; both samples fall well inside it
    try:
        for seconds_ago, ok in ((45, 0), (25, 5)):
            totals = {("churn", "churn:1"): counts(ok)}
            at = now - timedelta(seconds=seconds_ago)
            record_sample(store, source="a:1", totals=totals, at=at, resolution_s=10)
    finally:
        store.close()
    found = client.endpoints.traffic_series("churn", window="1h")
    assert found.window == "1h" and found.deployments[0].deployment == "churn:1"
    assert found.deployments[0].total_requests == 5
    with pytest.raises(cloche.errors.BadRequest, match="1h, 1d"):
        client.endpoints.traffic_series("churn", window="week")
