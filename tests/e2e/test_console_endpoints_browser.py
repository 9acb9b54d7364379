"""The endpoints pages in Debian's Chromium against a real `cloche up`: create an endpoint,
deploy two versions, set 90/10 in the traffic editor (after it refuses 90/20), send predictions
and see both deployments in the traffic charts and their numbers."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

import cloche
from tests.e2e._browser import (
    DESKTOP_WIDTH,
    PHONE_WIDTH,
    Browse,
    assert_accessible,
    browse,
    chromium,
    set_width,
)
from tests.e2e._servers import cloche_up

__all__ = ["browse", "chromium"]  # fixtures, imported for pytest

pytestmark = pytest.mark.slow
ROW = [0.1, 0.2, 0.3, 0.4]
CHART_WAIT_S = 90  # the sampler writes every second here; a busy 2-core machine is slow


def _deploy(page: Page, model: str, traffic: str = "") -> None:
    page.get_by_label("Model version").fill(model)
    page.get_by_label("Traffic (%, optional)").fill(traffic)
    page.get_by_role("button", name="Deploy", exact=True).click()
    expect(page.get_by_role("status")).to_have_text(f"{model} is deployed")


def _predict(url: str, auth: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/models/churn-live:predict", json={"instances": [ROW]}, headers=auth
    )


def _predict_until_served(url: str, auth: dict[str, str]) -> int:
    """The workers pick up the console's changes at their next poll: the answered requests
    (1) once they serve it; the refused ones before are not routed to a deployment."""
    deadline = time.monotonic() + 60
    while _predict(url, auth).status_code == 404:
        assert time.monotonic() < deadline, "the workers never served the new deployments"
        time.sleep(0.2)
    return 1


def _requests_shown(page: Page) -> dict[str, int]:
    rows = page.locator("#traffic-summary tbody tr").all_inner_texts()
    cells = [r.split("\t") for r in rows]
    return {c[0].strip(): int(c[1].replace(",", "")) for c in cells}


def _wait_for_traffic(page: Page, url: str, sent: int) -> dict[str, int]:
    """Reload until the sampler's points for every request sent reach the traffic table."""
    deadline = time.monotonic() + CHART_WAIT_S
    while True:
        page.goto(url)
        page.locator("#endpoint-traffic select").wait_for()  # the section has loaded
        shown = _requests_shown(page)
        if sum(shown.values()) == sent:
            return shown
        assert time.monotonic() < deadline, f"the charts show {shown} of {sent} requests"
        page.wait_for_timeout(2000)


def test_canary_deploy_split_and_charts(
    browse: Browse, tmp_path: Path, sklearn_model_file: Path
) -> None:
    env = {"CLOCHE_SERVING__TRAFFIC_SAMPLE_SECONDS": "1"}
    with cloche_up(tmp_path / "home", env=env) as server, browse(server.url) as page:
        token = server.auth["Authorization"].removeprefix("Bearer ")
        with cloche.Client(server.url, token=token) as sdk:
            sdk.models.upload(sklearn_model_file, name="churn")
            sdk.models.upload(sklearn_model_file, name="churn")
        page.goto("/console/sign-in")
        page.get_by_role("button", name="Sign in with this machine's local credential").click()
        page.get_by_role("link", name="Endpoints").click()
        page.get_by_label("Name", exact=True).fill("churn-live")
        page.get_by_role("button", name="Create endpoint").click()
        page.wait_for_url("**/console/endpoints/churn-live")
        expect(page.locator("#no-traffic")).to_contain_text("No traffic yet")

        _deploy(page, "churn:1")
        _deploy(page, "churn:2", "50")
        page.get_by_label("churn:1 (%)").fill("90")
        page.get_by_label("churn:2 (%)").fill("20")
        page.get_by_role("button", name="Set traffic").click()
        expect(page.locator("#split-error")).to_contain_text(
            "traffic must sum to 100, but 90 (churn:1) + 20 (churn:2) = 110"
        )
        page.get_by_label("churn:2 (%)").fill("10")
        page.get_by_role("button", name="Set traffic").click()
        expect(page.get_by_role("status")).to_have_text("traffic now: churn:1 90%, churn:2 10%")
        table = page.locator("#endpoint-main table")
        expect(table).to_contain_text("churn:1\t90%")
        expect(table).to_contain_text("churn:2\t10%")

        sent = _predict_until_served(server.url, server.auth) + 200
        for _ in range(200):
            answer = _predict(server.url, server.auth)
            assert answer.status_code == 200, answer.text
        shown = _wait_for_traffic(page, "/console/endpoints/churn-live", sent=sent)
        assert list(shown) == ["churn:1", "churn:2"] and shown["churn:2"] > 0
        expect(page.locator("#endpoint-traffic .chart canvas")).to_have_count(3)  # uPlot drew them
        expect(page.locator("#endpoint-logs")).to_contain_text("churn-live --since 1h")
        assert_accessible(page)
        set_width(page, PHONE_WIDTH)
        assert_accessible(page)
        set_width(page, DESKTOP_WIDTH)
