"""Console monitor pages on a real server: the list, a monitor's heat table and latest run, a
feature's history and histogram, run now, pause and resume."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cloche import audit
from cloche.config import Settings
from cloche.endpoints import service as endpoints
from cloche.monitoring import runs, service
from cloche.monitoring.entities import MonitorConfig
from cloche.store.store import Store
from tests.integration import test_monitors as monitored

from ._console import Browser, signed_in, signed_in_as, text_of, upload_model
from .conftest import LiveServer

NOW = monitored.NOW


@pytest.fixture
def watched(store: Store, settings: Settings, sklearn_model_file: Path, tmp_path: Path) -> str:
    """Monitor ``churn`` ran three hourly windows; in the last, ``spend`` moved by 2 std."""
    rng = np.random.default_rng(0)
    baseline = tmp_path / "baseline.parquet"
    pq.write_table(pa.table({f: rng.normal(size=5_000) for f in monitored.FEATURES}), baseline)
    upload_model(store, sklearn_model_file, "churn", baseline=baseline)
    endpoints.create_endpoint(store, name="churn")
    endpoints.deploy(store, endpoint="churn", ref="churn:1")
    service.create_monitor(store, endpoint="churn", config=MonitorConfig())
    for hour, shift in ((3, {}), (2, {}), (1, {"spend": 2.0})):
        start = NOW - timedelta(hours=hour)
        monitored.log_traffic(store, start, 500, shift)
        runs.run_monitor(store, "churn", settings=settings, now=start + timedelta(hours=1))
    return "churn"


@pytest.fixture
def admin(live_server: LiveServer) -> Any:
    with signed_in(live_server.url, live_server.token) as browser:
        yield browser


@pytest.fixture
def viewer(live_server: LiveServer, store: Store) -> Any:
    with signed_in_as(store, live_server.url, "viewer") as browser:
        yield browser


def _heat_cells(page: str, feature: str, check: str) -> list[str]:
    """The heat table row of ``feature``/``check``: each cell's class and text."""
    row = re.search(
        rf'features/{feature}">{feature}</a></th>\s*<td>{check}</td>(.*?)</tr>', page, re.S
    )
    assert row is not None, f"no heat row for {feature} {check}"
    cells = re.findall(r'<td class="heat-cell ([^"]*)"[^>]*>(.*?)</td>', row.group(1), re.S)
    return [f"{cls} | {text_of(text)}" for cls, text in cells]


def test_the_monitors_list_shows_each_monitor_and_its_state(admin: Browser, watched: str) -> None:
    page = text_of(admin.get("/console/monitors").text)
    assert "1 monitor" in page and "churn churn on schedule 3600 s" in page


def test_search_sort_and_pages_of_monitors(admin: Browser, store: Store, watched: str) -> None:
    for i in range(26):
        endpoints.create_endpoint(store, name=f"e{i:02d}")
        service.create_monitor(store, endpoint=f"e{i:02d}", config=MonitorConfig())
    first = text_of(admin.get("/console/monitors").text)
    assert "27 monitors" in first and "Page 1 of 2" in first and "e24" not in first
    backwards = text_of(admin.get("/console/monitors?sort=-name").text)
    assert backwards.index("e25") < backwards.index("e24") and "churn" not in backwards
    found = admin.get("/console/monitors?q=CHU", htmx=True)
    assert found.text.lstrip().startswith('<section id="monitors-table"')
    assert "1 monitor matching “CHU”" in text_of(found.text) and "e00" not in found.text


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/console/monitors?sort=evil", 400, "sort by one of"),
        ("/console/monitors?page=0", 400, "pages count from 1"),
        ("/console/monitors/nope", 404, "does not exist"),
        ("/console/monitors/churn/features/nope", 404, "its features: age, spend"),
        ("/console/monitors/churn/features/spend?limit=0", 400, "out of range"),
        ("/console/monitors/churn/features/spend?limit=lots", 400, "not a whole number"),
        ("/console/monitors/churn/features/spend?run=x", 400, "not a whole number"),
        ("/console/monitors/churn/features/spend?run=9999", 404, "has no run 9999"),
    ],
)
def test_bad_monitor_paths_and_queries_get_a_clear_error_page(
    admin: Browser, watched: str, path: str, status: int, says: str
) -> None:
    response = admin.get(path)
    assert response.status_code == status and says in text_of(response.text), response.text


def test_the_heat_table_shows_each_windows_distance_and_verdict(
    admin: Browser, watched: str
) -> None:
    response = admin.get("/console/monitors/churn")
    assert response.status_code == 200
    spend = _heat_cells(response.text, "spend", "skew")
    assert len(spend) == 3 and [c.split(" | ")[1].split()[1] for c in spend] == [
        "ok",
        "ok",
        "breached",
    ]
    assert "heat-breached" in spend[-1] and "heat-breached" not in spend[0]
    assert float(spend[-1].split(" | ")[1].split()[0]) > 0.3
    drift = _heat_cells(response.text, "spend", "drift")
    assert drift[0].endswith("| —") and "breached" in drift[-1]  # run 1 had no earlier window
    assert all(c.endswith("ok") for c in _heat_cells(response.text, "tenure", "skew"))


def test_the_monitor_page_shows_the_latest_runs_quality_performance_and_health(
    admin: Browser, watched: str
) -> None:
    page = text_of(admin.get("/console/monitors/churn").text)
    assert "breached — run 3" in page and "500 rows" in page
    assert "spend missing rate 0.0% 20.0% ok" in page  # data quality per feature and rule
    assert "0 labelled rows in the window" in page  # no feedback was sent
    assert "error rate 0 0.05 ok" in page and "p50 ms 2.5" in page
    partial = admin.get("/console/monitors/churn", htmx=True)
    assert partial.text.lstrip().startswith('<div id="monitor-main">')


def test_a_feature_page_charts_its_history_and_draws_its_histogram(
    admin: Browser, watched: str
) -> None:
    response = admin.get("/console/monitors/churn/features/spend")
    assert response.status_code == 200
    found = re.search(r'data-feature-chart="([^"]*)"', response.text)
    assert found is not None
    series = json.loads(unescape(found.group(1)))
    assert len(series["t"]) == 3 and series["skew_threshold"] == [0.3, 0.3, 0.3]
    assert series["drift"][0] is None and series["skew"][2] > 0.3
    assert 'role="img"' in response.text and "<svg" in response.text
    page = text_of(response.text)
    assert "spend: baseline against the window of run 3" in page
    assert "5000 baseline rows, 500 window rows" in page
    assert "uPlot.iife.min.js" in response.text and "monitors.js" in response.text
    first = response.text.split("?run=")[-1].split('"')[0]  # the oldest run in the table
    earlier = text_of(admin.get(f"/console/monitors/churn/features/spend?run={first}").text)
    assert f"window of run {first}" in earlier


def test_run_now_records_a_run_and_shows_it(admin: Browser, store: Store, watched: str) -> None:
    form = {"csrf_token": admin.csrf("/console/monitors/churn")}
    response = admin.post("/console/monitors/churn/run", form, htmx=True)
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<div id="monitor-main">')
    latest = service.list_runs(store, "churn", limit=1)[0]
    assert latest.id == 4 and latest.status == "no_data"  # no traffic in the real last hour
    assert f"Ran churn: no_data. {latest.message}" in text_of(response.text)
    # Posted without htmx (clicked before its script ran): post/redirect/get, and the page it
    # lands on says what ran, from the store.
    plain = admin.post("/console/monitors/churn/run", form)
    assert plain.status_code == 303
    assert plain.headers["location"] == "/console/monitors/churn?done=run"
    again = service.list_runs(store, "churn", limit=1)[0]
    landed = text_of(admin.get(plain.headers["location"]).text)
    assert again.id == 5 and f"Ran churn: no_data. {again.message}" in landed
    assert "Ran churn" not in text_of(admin.get("/console/monitors/churn?done=bogus").text)


def test_pause_and_resume_change_the_schedule_and_are_audited(
    admin: Browser, store: Store, watched: str
) -> None:
    form = {"csrf_token": admin.csrf("/console/monitors/churn")}
    paused = admin.post("/console/monitors/churn/pause", form, htmx=True)
    assert "churn is paused." in text_of(paused.text) and "paused" in text_of(paused.text)
    assert not service.get_monitor(store, "churn").enabled
    assert "churn churn paused" in text_of(admin.get("/console/monitors").text)
    admin.post("/console/monitors/churn/resume", form, htmx=True)
    assert service.get_monitor(store, "churn").enabled
    actions = [e.action for e in audit.list_audit(store, resource_type="monitor", limit=2)]
    assert actions == ["monitor.resume", "monitor.pause"]


def test_a_service_error_appears_beside_the_actions(admin: Browser, watched: str) -> None:
    form = {"csrf_token": admin.csrf("/console/monitors/churn")}
    response = admin.post("/console/monitors/gone/pause", form, htmx=True)
    assert response.status_code == 404
    assert response.headers["HX-Retarget"] == "#monitor-actions"
    assert 'id="actions-error"' in response.text and "gone" in text_of(response.text)
    page = admin.post("/console/monitors/gone/run", form)
    assert page.status_code == 404 and "<html" in page.text
    assert admin.post("/console/monitors/churn/explode", form).status_code == 404


def test_a_forged_action_is_refused_and_changes_nothing(
    admin: Browser, store: Store, watched: str
) -> None:
    response = admin.post("/console/monitors/churn/pause", {"csrf_token": "wrong"})
    assert response.status_code == 403 and service.get_monitor(store, "churn").enabled


def test_a_viewer_sees_no_actions_and_a_forged_one_gets_the_apis_403(
    viewer: Any, live_server: LiveServer, store: Store, watched: str
) -> None:
    page = viewer.get("/console/monitors/churn")
    assert page.status_code == 200 and 'id="monitor-actions"' not in page.text
    assert "breached" in text_of(page.text)  # a viewer still reads every result
    form = {"csrf_token": viewer.csrf("/console/monitors/churn")}
    response = viewer.post("/console/monitors/churn/pause", form)
    api = httpx.post(
        f"{live_server.url}/api/v1/monitors/churn/pause",
        headers={"Authorization": f"Bearer {viewer.token}"},
    )
    assert response.status_code == api.status_code == 403
    assert api.json()["error"]["message"] in text_of(response.text)
    assert service.get_monitor(store, "churn").enabled


def test_a_webhooks_secret_path_is_shown_to_admins_only(
    admin: Browser, viewer: Any, store: Store, watched: str
) -> None:
    config = MonitorConfig(alerts=["webhook:http://127.0.0.1:9/T0/B0/s3cret"])
    service.create_monitor(
        store, endpoint="churn", name="hooked", config=config, egress=monitored.LOOPBACK
    )
    assert "s3cret" in admin.get("/console/monitors/hooked").text
    for path in ("/console/monitors/hooked", "/console/monitors"):
        shown = viewer.get(path).text
        assert "s3cret" not in shown
    assert "webhook:http://127.0.0.1:9/..." in text_of(viewer.get("/console/monitors/hooked").text)
