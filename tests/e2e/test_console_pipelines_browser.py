"""The console's pipeline pages in Chromium against a real `cloche up`: start a run of a
pipeline with an approval step from its form, approve the waiting step on the run's page, and
watch the graph (refreshed while the run goes) turn to succeeded, at phone and desktop widths."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import expect

from cloche.config import Settings
from cloche.pipelines import registered
from cloche.pipelines.loading import load_pipeline
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

__all__ = ["browse", "chromium"]  # fixtures, imported for pytest

SOURCE = """
from cloche.pipelines import If, component, pipeline
from cloche.pipelines.components import approval


@component
def count(n: int) -> int:
    print(f"counted {n}")
    return n


@pipeline(name="gated")
def gated(n: int) -> None:
    decision = approval(message="count the rows?", timeout_seconds=300)
    with If(decision.outputs["approved"] == True):  # noqa: E712
        count(n=n)
"""
RUN_MS = 120_000  # the server's scheduler starts the run in a process of its own
# Twelve steps in a chain: twelve columns, about 2,700 px wide at the graph's own size.
WIDE = """
from cloche.pipelines import component, pipeline


@component
def step(n: int) -> int:
    return n + 1


@pipeline(name="wide")
def wide(n: int = 0) -> None:
    value = step(n=n)
    for _ in range(11):
        value = step(n=value.output)
"""


def _register(home: Path, folder: Path, source: str = SOURCE, name: str = "gated") -> None:
    """Register as `cloche pipelines register` does, in the server's store."""
    path = folder / f"{name}.py"
    path.write_text(source)
    store = Store.open(Settings(home=home))
    try:
        pipe = load_pipeline(str(path))
        registered.register(store, pipe, source=source, file_name=path.name, actor="test")
    finally:
        store.close()


def test_a_wide_graph_is_seen_whole_at_desktop_width_and_scrolls_on_a_phone(
    browse: Browse, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    with cloche_up(home) as server, browse(server.url) as page:
        _register(home, tmp_path, WIDE, "wide")
        page.goto("/console/sign-in?next=/console/pipelines/wide")
        page.get_by_role("button", name="Sign in with this machine's local credential").click()
        graph = page.locator(".graph").first
        expect(graph.locator("g.step")).to_have_count(12)
        for width in (DESKTOP_WIDTH, 1920):
            set_width(page, width)
            box, svg = graph.bounding_box(), graph.locator("svg").bounding_box()
            assert box is not None and svg is not None
            assert svg["x"] + svg["width"] <= box["x"] + box["width"] + 1  # nothing cut off
            assert page.evaluate("document.documentElement.scrollWidth") <= width
        set_width(page, PHONE_WIDTH)
        sizes = graph.evaluate("g => [g.scrollWidth, g.clientWidth]")
        assert sizes[0] > sizes[1] > 0  # the graph keeps its size and scrolls sideways
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE_WIDTH


def test_a_run_is_started_approved_and_its_graph_turns_green(
    browse: Browse, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    with cloche_up(home) as server, browse(server.url) as page:
        _register(home, tmp_path)
        page.goto("/console/sign-in?next=/console/pipelines")
        page.get_by_role("button", name="Sign in with this machine's local credential").click()
        page.get_by_role("link", name="gated").click()
        expect(page.get_by_role("heading", name="gated", level=1)).to_be_visible()
        page.get_by_label("n (int, required)").fill("three")
        page.get_by_role("button", name="Start run").click()
        expect(page.locator("#run-error")).to_contain_text("parameter 'n' takes a int")
        assert_accessible(page)
        page.get_by_label("n (int, required)").fill("3")
        page.get_by_role("button", name="Start run").click()
        expect(page).to_have_url(re.compile(r"/console/runs/pr_\w+$"))
        approve = page.get_by_role("button", name="Approve approval")
        expect(approve).to_be_visible(timeout=RUN_MS)
        expect(page.locator("#run-state")).to_have_text("waiting for approval")
        set_width(page, PHONE_WIDTH)
        assert_accessible(page)
        page.get_by_label("Comment (optional)").fill("looks right")
        approve.click()
        expect(page.locator("#run-state")).to_have_text("succeeded", timeout=RUN_MS)
        graph = page.locator(".graph svg")
        expect(graph.locator('g[data-step="count"]')).to_have_attribute("data-state", "succeeded")
        expect(graph.locator('g[data-step="approval"]')).to_have_attribute(
            "data-state", "succeeded"
        )
        expect(page.locator("#run-main")).to_contain_text(re.compile(r"approved by local:\w+"))
        expect(page.locator("#run-main")).to_contain_text("“looks right”")
        expect(page.locator("#run-main")).not_to_have_attribute("hx-trigger", "every 2s")
        set_width(page, DESKTOP_WIDTH)
        assert_accessible(page)
        page.screenshot(path=SCREENSHOTS / "console-run-approved.png", full_page=True)
        page.get_by_role("link", name="count", exact=True).click()
        expect(page.locator("pre.log")).to_contain_text("counted 3")
        set_width(page, PHONE_WIDTH)
        page.goto("/console/pipelines/gated")
        expect(page.locator("#pipeline-runs")).to_contain_text("succeeded")  # loaded by htmx
        expect(page.locator("#schedule-form")).to_be_visible()
        assert_accessible(page)
        page.goto("/console/runs?state=succeeded")
        expect(page.locator("#runs-count")).to_have_text("1 run succeeded")
        assert_accessible(page)
