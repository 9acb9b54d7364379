"""The console's front door in Debian's Chromium against a real `cloche up`.

One server for the module, seeded through the CLI on its home before it starts: model churn
(v1 on `prod`, v2), endpoint churn serving v1, an empty endpoint, and a drift alert opened by
a monitor run over a batch job whose `age` moved by two standard deviations. Each test signs
in its own browser context, does one flow and checks what the page shows.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from playwright.sync_api import Page, expect

from cloche.batch import service as batch
from cloche.batch.entities import BatchJob
from cloche.batch.spec import JobSpec
from cloche.config import Settings
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
from tests.e2e._cli import cloche
from tests.e2e._servers import UpProcess, cloche_up

__all__ = ["browse", "chromium"]  # fixtures, imported for pytest

pytestmark = pytest.mark.slow

FEATURES = ["tenure", "spend", "visits", "age"]
LOCAL_BUTTON = "Sign in with this machine's local credential"


@dataclass
class Console:
    server: UpProcess
    home: Path
    model_file: Path
    viewer_token: str

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="module")
def console(
    tmp_path_factory: pytest.TempPathFactory, iris_like: tuple[np.ndarray, np.ndarray]
) -> Iterator[Console]:
    work = tmp_path_factory.mktemp("console")
    home = work / "home"
    model_file = _model_file(work, iris_like)
    viewer = _seed(home, work, model_file)
    with cloche_up(home) as server:
        yield Console(server, home, model_file, viewer)


def _model_file(work: Path, iris_like: tuple[np.ndarray, np.ndarray]) -> Path:
    import joblib
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    X, y = iris_like
    path = work / "churn.joblib"
    joblib.dump(LogisticRegression(max_iter=500).fit(pd.DataFrame(X, columns=FEATURES), y), path)
    return path


def _seed(home: Path, work: Path, model_file: Path) -> str:
    """What the overview and the models pages show; the viewer token it made."""
    env = {"CLOCHE_HOME": str(home)}
    rng = np.random.default_rng(7)
    baseline = work / "baseline.parquet"
    pq.write_table(pa.table({f: rng.normal(size=3_000) for f in FEATURES}), baseline)
    drifted = rng.normal(size=(1_500, 4))
    drifted[:, 3] += 2.0
    source = _jsonl(work / "customers.jsonl", drifted.tolist())
    steps = [
        ["models", "upload", model_file, "--name", "churn", "--alias", "prod"],
        ["models", "upload", model_file, "--name", "churn"],
        ["baselines", "create", "churn:1", baseline],
        ["endpoints", "create", "churn"],
        ["endpoints", "deploy", "churn", "churn:1"],
        ["endpoints", "create", "empty"],
        ["monitors", "create", "churn", "--alert", "log"],
        ["batch", "run", "churn:1", "-i", source, "-o", work / "scores", "--workers", "1",
         "--output-format", "jsonl"],
    ]  # fmt: skip
    for args in steps:
        done = cloche(*args, env=env)
        assert done.exit_code == 0, (args, done.output)
    job = cloche("batch", "list", "--json", env=env)
    job_id = json.loads(job.stdout)[0]["id"]
    run = cloche("monitors", "run", "churn", "--batch-job", job_id, env=env)
    assert "batch:skew:age" in run.stdout, run.output
    made = cloche("tokens", "create", "--role", "viewer", "--name", "eve", "--json", env=env)
    assert made.exit_code == 0, made.output
    return str(json.loads(made.stdout)["token"])


def _jsonl(path: Path, rows: list[list[float]]) -> Path:
    path.write_text("".join(json.dumps(dict(zip(FEATURES, r, strict=True))) + "\n" for r in rows))
    return path


def sign_in_locally(page: Page) -> None:
    page.goto("/console/")
    expect(page).to_have_url("/console/sign-in?next=/console/")
    page.get_by_role("button", name=LOCAL_BUTTON).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")


def assert_fits(page: Page, name: str) -> None:
    """Accessible at phone and desktop widths, with no sideways scroll; a screenshot of each."""
    for width in (PHONE_WIDTH, DESKTOP_WIDTH):
        set_width(page, width)
        assert_accessible(page)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{page.url} scrolls sideways by {overflow} px at {width} px"
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=SCREENSHOTS / f"console-{name}-{width}.png", full_page=True)


def test_local_sign_in_shows_the_real_overview_in_the_browsers_zone_and_every_page_is_accessible(
    console: Console, browse: Browse
) -> None:
    zone = "America/New_York"
    with (
        _running_job(console.home) as job,
        browse(console.url, timezone_id=zone, locale="en-US") as page,
    ):
        # The address `cloche up` prints opens the sign-in page.
        printed = re.search(r"Console: (http://\S+)", console.server.log())
        assert printed is not None and printed[1] == f"{console.url}/console", console.server.log()
        page.goto(printed[1])
        expect(page).to_have_url("/console/sign-in?next=/console/")
        assert_fits(page, "sign-in")
        sign_in_locally(page)
        endpoints = page.locator("#overview-endpoints")
        expect(endpoints.get_by_role("row", name="churn serving churn:1 100%")).to_be_visible()
        expect(endpoints.get_by_role("row", name="empty nothing deployed")).to_be_visible()
        alerts = page.locator("#overview-alerts")
        expect(alerts).to_contain_text("open churn: batch:skew:age")
        running = re.compile(rf"{job.id} scoring with churn:1: \d+ of 40 rows,\s+started")
        expect(page.locator("#overview-jobs")).to_contain_text(running)
        assert_fits(page, "overview")

        # Times: the browser's zone on the page, UTC on hover.
        when = alerts.locator("time").first
        utc = datetime.fromisoformat(str(when.get_attribute("datetime")).replace("Z", "+00:00"))
        local = utc.astimezone(ZoneInfo(zone))
        assert when.get_attribute("title") == utc.strftime("%Y-%m-%d %H:%M UTC")
        shown = when.inner_text()
        assert local.strftime("%I:%M %p") in shown and local.strftime("%b") in shown, shown

        pages = {
            "models": "/console/models",
            "model": "/console/models/churn",
            "endpoints": "/console/endpoints",
            "endpoint": "/console/endpoints/churn",
        }
        for name, path in pages.items():
            page.goto(path)
            expect(page.get_by_role("heading", level=1)).to_be_visible()
            assert_fits(page, name)
        # The newest version has no baseline; its page names the command that adds one.
        page.goto("/console/models/churn")
        expect(page.locator("main")).to_contain_text("No baseline: cloche baselines create churn:2")


def test_an_admin_uploads_a_model_and_moves_an_alias_by_keyboard(
    console: Console, browse: Browse
) -> None:
    with browse(console.url) as page:
        sign_in_locally(page)
        # Tab reaches the skip link first, then the nav; the skip link moves focus to the content.
        focused = []
        for _ in range(4):
            page.keyboard.press("Tab")
            focused.append(page.evaluate("document.activeElement.textContent.trim()"))
        assert focused == ["Skip to content", "cloche", "Overview", "Models"]
        page.keyboard.press("Enter")
        expect(page).to_have_url("/console/models")
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")
        expect(page.locator("main")).to_be_focused()

        page.get_by_label("Model name").fill("fraud")
        page.get_by_label("Model file").set_input_files(console.model_file)
        page.get_by_label("Aliases (optional)").press("Enter")  # submits the form
        # The upload is inspected in a child process: seconds on a busy machine.
        notice = page.locator("#upload-form .notice")
        expect(notice).to_contain_text("uploaded fraud:1 (sklearn)", timeout=60_000)
        page.reload()
        expect(page.get_by_role("row", name="fraud 1 1 sklearn")).to_be_visible()

        page.get_by_role("link", name="churn", exact=True).click()
        version = page.get_by_role("spinbutton", name="Version")
        page.get_by_role("textbox", name="Alias").fill("prod")
        version.fill("2")
        version.press("Enter")
        expect(page.locator("#model-main .notice")).to_contain_text("prod")
        expect(page.get_by_role("row", name="2 prod sklearn")).to_be_visible()
        # An error from the service sits beside the control that caused it.
        page.get_by_role("textbox", name="Alias").fill("prod")
        version.fill("9")
        version.press("Enter")
        expect(page.locator("#alias-error")).to_contain_text("has no version 9 (versions: 1, 2)")
        expect(version).to_have_attribute("aria-invalid", "true")
        expect(version).to_have_accessible_description(re.compile("has no version 9"))


def test_a_viewer_sees_no_controls_and_signing_out_ends_the_session(
    console: Console, browse: Browse
) -> None:
    with browse(console.url) as page:
        page.goto("/console/sign-in")
        token = page.get_by_role("textbox", name="API token")
        token.fill(console.viewer_token)
        token.press("Enter")
        expect(page.locator("header .who")).to_have_text(
            re.compile(r"\s*token:\w+ viewer\s+Sign out\s*")
        )
        page.goto("/console/models")
        expect(page.get_by_role("row", name="churn 2 2")).to_be_visible()
        assert page.locator("#upload-form").count() == 0
        page.goto("/console/models/churn")
        expect(page.get_by_role("heading", name="Versions")).to_be_visible()
        assert page.locator("#alias-form").count() == 0

        old = [c for c in page.context.cookies() if c["name"] == "cloche_console"]
        assert old and old[0]["httpOnly"] and old[0]["sameSite"] == "Strict"
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to the console")
        page.context.add_cookies(old)  # the old cookie, put back: the session is gone
        page.goto("/console/models")
        expect(page).to_have_url("/console/sign-in?next=/console/models")


def test_a_form_posted_from_another_origin_is_refused_and_changes_nothing(
    console: Console, browse: Browse
) -> None:
    with _forging_site(console.url) as forger, browse(console.url, also=[forger]) as page:
        sign_in_locally(page)
        page.goto(forger)  # a page elsewhere that posts to the alias form at once
        # The server's Host/Origin guard answers before the console's own gate (CSRF) is reached.
        expect(page.locator("body")).to_contain_text(f"cross-origin request from {forger} refused")
        page.goto("/console/models/churn")
        expect(page.get_by_role("heading", name="Versions")).to_be_visible()
        expect(page.locator("#model-main")).not_to_contain_text("forged")
    prod = httpx.get(
        f"{console.url}/api/v1/models/churn/versions/@forged", headers=console.server.auth
    )
    assert prod.status_code == 404  # no alias `forged` was made


@contextmanager
def _running_job(home: Path) -> Iterator[BatchJob]:
    """A batch job held running (its first chunk done) in a thread here until the block ends."""
    rows = np.random.default_rng(1).normal(size=(40, 4)).tolist()
    source = _jsonl(home.parent / "running.jsonl", rows)
    spec = JobSpec(input=str(source), output=str(home.parent / "running"), workers=1, chunk_rows=10)
    started, release = threading.Event(), threading.Event()
    seen: list[BatchJob] = []

    def hold(job: BatchJob) -> None:
        if not seen:
            seen.append(job)
            started.set()
            release.wait(120)

    store = Store.open(Settings(home=home))
    worker = threading.Thread(
        target=batch.run,
        kwargs={"store": store, "model_ref": "churn:1", "spec": spec, "on_progress": hold},
    )
    worker.start()
    try:
        assert started.wait(60), "the batch job did not start"
        yield seen[0]
    finally:
        release.set()
        worker.join(60)
        store.close()


FORM = """<!doctype html><html lang="en"><head><title>win a prize</title></head><body>
<form method="post" action="{action}"><input name="alias" value="forged">
<input name="version" value="1"></form><script>document.forms[0].submit()</script></body></html>"""


@contextmanager
def _forging_site(console_url: str) -> Iterator[str]:
    """A page on another origin of this machine that posts to the console's alias form."""
    body = FORM.format(action=f"{console_url}/console/models/churn/aliases").encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    site = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{site.server_address[1]}"
    finally:
        site.shutdown()
        site.server_close()
