"""The batch, tokens and audit pages in Debian's Chromium against a real `cloche up`: start a
job from the form and watch it finish; create a token, see its secret once, revoke it; a
viewer's session offers no tokens or audit pages."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from playwright.sync_api import Page, expect

from cloche.auth import tokens
from cloche.auth.roles import LOCAL_USER
from cloche.config import Settings
from cloche.registry.inspection import inspect_here
from cloche.registry.upload import upload_model
from cloche.store.store import Store
from tests.e2e._browser import (
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
FEATURES = ["tenure", "spend", "visits", "age"]


def prepare(home: Path, model_file: Path) -> str:
    """The model in the registry, 300 rows in the home (a folder the server may use by
    default), and a viewer's token."""
    (home / "data").mkdir(parents=True)
    table = pa.table({name: [0.01 * i for i in range(300)] for name in FEATURES})
    pq.write_table(table, home / "data" / "in.parquet")
    store = Store.open(Settings(home=home))
    try:
        upload_model(
            store, principal=LOCAL_USER, inspector=inspect_here, source=model_file, name="churn"
        )
        return tokens.create_token(store, role="viewer", name="watcher").token
    finally:
        store.close()


def sign_in_locally(page: Page) -> None:
    page.goto("/console/sign-in")
    page.get_by_role("button", name="Sign in with this machine's local credential").click()
    expect(page.get_by_role("link", name="Batch jobs")).to_be_visible()


def test_start_a_job_watch_it_finish_and_manage_tokens(
    browse: Browse, tmp_path: Path, sklearn_model_file: Path
) -> None:
    home = tmp_path / "home"
    viewer_token = prepare(home, sklearn_model_file)
    with cloche_up(home) as server:
        with browse(server.url) as page:
            run_a_job_and_manage_tokens(page, home)
        with browse(server.url) as page:
            page.goto("/console/sign-in")
            page.locator("#token").fill(viewer_token)
            page.get_by_role("button", name="Sign in", exact=True).click()
            expect(page.get_by_role("link", name="Batch jobs")).to_be_visible()
            assert page.get_by_role("link", name="Tokens").count() == 0
            # A viewer reads the audit log, as GET /api/v1/audit lets it; tokens stay an admin's.
            expect(page.get_by_role("link", name="Audit log")).to_be_visible()
            page.goto("/console/tokens")
            expect(page.locator("main")).to_contain_text("role 'viewer' may not admin")


def run_a_job_and_manage_tokens(page: Page, home: Path) -> None:
    sign_in_locally(page)
    page.get_by_role("link", name="Batch jobs").click()
    page.get_by_label("Model version", exact=True).fill("churn:1")
    page.get_by_label("Input (absolute file, folder or glob)").fill(
        str((home / "data" / "in.parquet").resolve())
    )
    page.get_by_label("Output folder (absolute)").fill(str((home / "data" / "out").resolve()))
    page.get_by_role("button", name="Start job").click()
    page.wait_for_url(re.compile(r"/console/batch/bj_[0-9a-f]+$"))
    # The progress section polls itself until the job ends; no reload here.
    expect(page.locator("#h-job-state")).to_have_text("State: succeeded", timeout=60_000)
    expect(page.locator("#job-rows")).to_have_text("300 of 300 rows")
    expect(page.locator("#job-main dl")).to_contain_text(re.compile(r"Rows scored\s*300"))
    assert list((home / "data" / "out").glob("predictions-*.parquet"))
    assert_accessible(page)
    page.screenshot(path=SCREENSHOTS / "console_batch_job_1440.png", full_page=True)
    set_width(page, PHONE_WIDTH)
    assert_accessible(page)
    page.screenshot(path=SCREENSHOTS / "console_batch_job_390.png", full_page=True)

    page.get_by_role("link", name="Tokens").click()
    page.get_by_label("Name", exact=True).fill("ci")
    page.get_by_label("Role", exact=True).select_option("deployer")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#token-secret").input_value()
    assert secret.startswith("cl_")
    page.goto("/console/tokens")  # not a reload: that would send the form again
    assert page.locator("#token-secret").count() == 0 and secret not in page.content()
    page.get_by_role("button", name=re.compile(r"Revoke token .* \(ci\)")).click()
    expect(page.locator("#tokens-table")).to_contain_text("revoked")
    page.get_by_role("link", name="Audit log").click()
    expect(page.locator("#audit-table")).to_contain_text("token.revoke")
    assert_accessible(page)
