"""Issue 18's first walk in Chromium, without the CLI: `make demo`'s script leaves its registry,
`cloche up` serves it, and a new user signs in, deploys churn:2 as a 10% canary in the endpoint's
editor, sees both versions' latency as a client app sends predictions, acknowledges the drift
alert the demo's traffic opened, starts the continuous-rollout pipeline, approves its waiting
step, and sees the run succeed and `prod` moved.

The rollout pipeline registers its model file again (churn:3, the bytes of churn:2) and canaries
that itself; the hand-made canary shows the latency side by side before the formal rollout."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from playwright.sync_api import Page, expect

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

__all__ = ["browse", "chromium"]  # fixtures, imported for pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
WAIT_MS = 180_000  # the pipeline uploads, evaluates, canaries and sends 200 requests: 2 cores
CHART_WAIT_S = 90


def _run_demo(folder: Path) -> Path:
    """examples/demo.py run from a copy in ``folder``; the registry it leaves (its home)."""
    (folder / "examples").mkdir()
    shutil.copyfile(REPO / "examples" / "demo.py", folder / "examples" / "demo.py")
    shutil.copytree(REPO / "examples" / "pipelines", folder / "examples" / "pipelines")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOCHE_")}
    done = subprocess.run(
        [sys.executable, str(folder / "examples" / "demo.py")],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return folder / ".cloche-demo"


def _sign_in(page: Page) -> None:
    page.goto("/console/sign-in")
    page.get_by_role("button", name="Sign in with this machine's local credential").click()


def _deploy_canary(page: Page) -> None:
    page.get_by_role("link", name="Endpoints").click()
    page.get_by_role("link", name="churn", exact=True).click()
    page.wait_for_url("**/console/endpoints/churn")
    page.get_by_label("Model version").fill("churn:2")
    page.get_by_label("Traffic (%, optional)").fill("10")
    page.get_by_role("button", name="Deploy", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("churn:2 is deployed")
    table = page.locator("#endpoint-main table")
    expect(table).to_contain_text("churn:1\t90%")
    expect(table).to_contain_text("churn:2\t10%")


def _send_predictions(url: str, rows: pd.DataFrame) -> None:
    """A client app's traffic (predictions are open on loopback), until churn:2 answers some."""
    by_version: dict[int, int] = {}
    deadline = time.monotonic() + 60
    with httpx.Client(timeout=10) as http:
        while by_version.get(2, 0) < 5 or sum(by_version.values()) < 100:
            assert time.monotonic() < deadline, f"answered by version: {by_version}"
            row = rows.sample(1).to_dict(orient="records")
            answer = http.post(f"{url}/v1/models/churn:predict", json={"instances": row})
            assert answer.status_code == 200, answer.text
            version = answer.json()["version"]
            by_version[version] = by_version.get(version, 0) + 1


def _latency_shown(page: Page) -> dict[str, str]:
    """Deployment -> its p50 cell, once the sampler has points for both versions."""
    deadline = time.monotonic() + CHART_WAIT_S
    while True:
        page.reload()
        page.locator("#endpoint-traffic").wait_for()
        rows = page.locator("#traffic-summary tbody tr").all_inner_texts()
        p50 = {r.split("\t")[0].strip(): r.split("\t")[3] for r in rows}
        if {"churn:1", "churn:2"} <= set(p50) and p50["churn:2"].endswith(" ms"):
            return p50
        assert time.monotonic() < deadline, f"the traffic table shows {rows}"
        page.wait_for_timeout(2000)


def _shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"console-walk-{name}.png", full_page=True)


def _acknowledge_drift(page: Page) -> None:
    page.get_by_role("link", name="Alerts").click()
    drift = page.locator("tr", has_text="skew:tenure_months")
    expect(drift).to_contain_text("open")
    drift.get_by_role("button", name="Acknowledge").click()
    expect(page.locator("tr", has_text="skew:tenure_months")).to_contain_text("by local:")
    assert_accessible(page)
    _shot(page, "2-alert-acknowledged")


def _roll_out(page: Page, url: str) -> None:
    page.get_by_role("link", name="Pipelines").click()
    page.get_by_role("link", name="continuous-rollout").click()
    # Only the server's address differs from the defaults (port 8080) on this test's server.
    page.get_by_label("url (str)").fill(url)
    page.get_by_role("button", name="Start run").click()
    expect(page).to_have_url(re.compile(r"/console/runs/pr_\w+$"))
    approve = page.get_by_role("button", name="Approve approval")
    expect(approve).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#run-state")).to_have_text("waiting for approval")
    page.get_by_label("Comment (optional)").fill("canary latency matches churn:1")
    approve.click()
    expect(page.locator("#run-state")).to_have_text("succeeded", timeout=WAIT_MS)
    graph = page.locator(".graph svg")
    for step in ("check_endpoint", "approval", "promote_alias", "report"):
        expect(graph.locator(f'g[data-step="{step}"]')).to_have_attribute("data-state", "succeeded")
    assert_accessible(page)
    _shot(page, "3-rollout-succeeded")


def test_from_the_demo_to_a_promoted_canary_without_the_cli(browse: Browse, tmp_path: Path) -> None:
    home = _run_demo(tmp_path)
    rows = pd.read_parquet(home / "work" / "holdout.parquet").drop(columns=["churned"])
    env = {"CLOCHE_SERVING__TRAFFIC_SAMPLE_SECONDS": "1"}
    with (
        cloche_up(home, env=env, cwd=home / "work") as server,
        browse(server.url) as page,
    ):
        _sign_in(page)
        _deploy_canary(page)
        _send_predictions(server.url, rows)
        p50 = _latency_shown(page)
        assert p50["churn:1"].endswith(" ms"), p50
        expect(page.locator("#endpoint-traffic .chart canvas")).to_have_count(3)  # uPlot drew them
        _shot(page, "1-canary-latency")
        set_width(page, PHONE_WIDTH)
        assert_accessible(page)
        set_width(page, DESKTOP_WIDTH)

        _acknowledge_drift(page)
        _roll_out(page, server.url)

        page.get_by_role("link", name="Models").click()
        page.get_by_role("link", name="churn", exact=True).click()
        versions = page.locator("#model-main table tbody tr")
        expect(versions.filter(has_text="prod")).to_have_count(1)
        expect(versions.filter(has_text="prod").locator("td").first).to_have_text("3")
        _shot(page, "4-prod-moved")
        page.goto("/console/endpoints/churn")
        expect(page.locator("#endpoint-main table")).to_contain_text("churn:3\t100%")
        set_width(page, PHONE_WIDTH)
        assert_accessible(page)
