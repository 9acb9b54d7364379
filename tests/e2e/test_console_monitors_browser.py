"""Monitors and alerts in Debian's Chromium against a real `cloche up`: drifted traffic, run the
monitor from its page, see the breached cell in the heat table, the feature's chart and
histogram, and the drift alert, then acknowledge it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from playwright.sync_api import Page, expect

from cloche.auth.roles import LOCAL_USER
from cloche.config import Settings
from cloche.endpoints import service as endpoints
from cloche.monitoring import service as monitoring
from cloche.monitoring.entities import MonitorConfig
from cloche.registry.inspection import inspect_here
from cloche.registry.upload import upload_model
from cloche.store.store import Store
from tests.e2e._browser import (
    DESKTOP_WIDTH,
    PHONE_WIDTH,
    SCREENSHOTS,
    Browse,
    assert_accessible,
    browse,
    chromium,
    set_width,
)
from tests.e2e._servers import cloche_up
from tests.integration import test_monitors as monitored

__all__ = ["browse", "chromium"]  # fixtures, imported for pytest

pytestmark = pytest.mark.slow


def _drifted_endpoint(home: Path, model_file: Path) -> None:
    """churn:1 with an N(0, 1) baseline, served and monitored; its last hour of traffic moved
    ``spend`` by three standard deviations, the hour before was like the baseline."""
    rng = np.random.default_rng(0)
    baseline = home.parent / "baseline.parquet"
    pq.write_table(pa.table({f: rng.normal(size=3_000) for f in monitored.FEATURES}), baseline)
    store = Store.open(Settings(home=home))
    try:
        upload_model(
            store,
            principal=LOCAL_USER,
            inspector=inspect_here,
            source=model_file,
            name="churn",
            baseline=baseline,
        )
        endpoints.create_endpoint(store, name="churn")
        endpoints.deploy(store, endpoint="churn", ref="churn:1")
        monitoring.create_monitor(store, endpoint="churn", config=MonitorConfig())
        now = datetime.now(UTC)
        monitored.log_traffic(store, now - timedelta(hours=2), 400, {})
        monitored.log_traffic(store, now - timedelta(hours=1), 400, {"spend": 3.0})
    finally:
        store.close()


def _check_widths(page: Page, shot: str) -> None:
    """Accessible at both widths; a screenshot of each (the last page's comes from browse)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    for width in (PHONE_WIDTH, DESKTOP_WIDTH):
        set_width(page, width)
        assert_accessible(page)
        page.screenshot(path=SCREENSHOTS / f"console-{shot}-{width}.png", full_page=True)


def test_a_drift_turns_its_cell_red_raises_an_alert_and_is_acknowledged(
    browse: Browse, tmp_path: Path, sklearn_model_file: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    _drifted_endpoint(home, sklearn_model_file)
    with cloche_up(home) as server, browse(server.url) as page:
        page.goto("/console/sign-in")
        page.get_by_role("button", name="Sign in with this machine's local credential").click()
        page.get_by_role("link", name="Monitors").click()
        expect(page.locator("#monitors-count")).to_have_text("1 monitor")
        page.get_by_role("link", name="churn").first.click()
        expect(page.get_by_text("This monitor has not run yet")).to_be_visible()

        page.get_by_role("button", name="Run now").click()
        expect(page.locator("#monitor-main .notice")).to_contain_text(
            "Ran churn: breached",
            timeout=120_000,  # a run reads the log: slow on a busy machine (60 s fell short once)
        )
        spend = page.locator("table.heat tr", has=page.get_by_role("link", name="spend"))
        skew = spend.filter(has_text="skew").locator("td.heat-cell").last
        expect(skew).to_contain_text("breached")
        expect(skew).to_have_class("heat-cell heat-3 heat-breached")
        tenure = page.locator("table.heat tr", has=page.get_by_role("link", name="tenure"))
        expect(tenure.filter(has_text="skew").locator("td.heat-cell").last).to_contain_text("ok")
        _check_widths(page, "monitor")

        page.get_by_role("link", name="spend").first.click()
        expect(page.locator(".feature-chart canvas")).to_have_count(1)  # uPlot drew it
        expect(page.locator("svg.histogram title").first).to_have_text(
            "spend: baseline against the window of run 1"
        )
        _check_widths(page, "monitor-feature")

        page.get_by_role("link", name="Alerts").click()
        drift = page.locator("tr", has_text="drift:spend")
        expect(drift).to_contain_text("open")
        drift.get_by_role("button", name="Acknowledge").click()
        expect(page.locator("tr", has_text="drift:spend")).to_contain_text("by local:")
        assert page.locator("tr", has_text="drift:spend").get_by_role("button").count() == 0
        _check_widths(page, "alerts")
