"""/api/docs in Debian's Chromium against a real `cloche up`, with the internet blocked.

Swagger UI, its CSS and its icon come from the server's vendored files; any request to another
host fails the test (``browse``), so this is the page an air-gapped site gets.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e._browser import PHONE_WIDTH, Browse, browse, chromium, set_width
from tests.e2e._servers import UpProcess, cloche_up

__all__ = ["browse", "chromium"]  # fixtures, imported for pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    """One `cloche up` for the module: both tests only read the page it serves."""
    with cloche_up(tmp_path_factory.mktemp("api-docs") / "home") as up:
        yield up


def test_api_docs_render_the_operations_with_no_internet(browse: Browse, server: UpProcess) -> None:
    with browse(server.url) as page:
        page.goto("/api/docs")
        models = page.locator('.opblock-summary-path[data-path="/api/v1/models"]').first
        models.wait_for(state="visible", timeout=30_000)
        assert page.locator(".info .title").inner_text().startswith("cloche")
        assert page.locator(".opblock").count() > 20  # the whole API, not one section
        # An operation opens to show its parameters and responses, all drawn by the bundle.
        page.locator('.opblock-get .opblock-summary-path[data-path="/api/v1/models"]').click()
        page.locator(".opblock.is-open .responses-wrapper").wait_for(state="visible")


def test_api_docs_fit_a_phone_width(browse: Browse, server: UpProcess) -> None:
    with browse(server.url) as page:
        set_width(page, PHONE_WIDTH)
        page.goto("/api/docs")
        page.locator(".opblock").first.wait_for(state="visible", timeout=30_000)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow} px at {PHONE_WIDTH} px"
