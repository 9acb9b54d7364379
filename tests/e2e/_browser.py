"""Debian's Chromium driven by Playwright, for the browser tests (console, API docs).

The browser is /usr/bin/chromium from Debian (scripts/services.sh installs it); Playwright never
downloads one. Every page is opened through ``browse``, which:

- blocks and reports any request to a host other than the server under test, so a page that
  would load a script or font from the internet fails here rather than on an air-gapped site;
- reports uncaught JavaScript errors;
- saves a full-page screenshot to SCREENSHOTS when the page closes, pass or fail.

``assert_accessible`` runs the vendored axe-core in the page; ``set_width`` with PHONE_WIDTH or
DESKTOP_WIDTH resizes it.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from cloche.vendor import VENDOR_DIR

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).with_name("screenshots")  # gitignored
AXE = VENDOR_DIR / "axe-core" / "axe.min.js"
PHONE_WIDTH = 390
DESKTOP_WIDTH = 1440
HEIGHTS = {PHONE_WIDTH: 844, DESKTOP_WIDTH: 900}
NETWORK_SCHEMES = frozenset({"http", "https", "ws", "wss"})
BLOCKING_IMPACTS = ("serious", "critical")


# Module scope, not session: while Playwright's sync API is open, its event loop counts as running
# on the main thread, so asyncio.run() in any later test of the session would fail.
@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """One headless Debian Chromium per test module; each test gets its own context."""
    executable = require_chromium(CHROMIUM)
    with sync_playwright() as playwright:
        # Playwright adds --no-sandbox itself when run as root.
        browser = playwright.chromium.launch(
            executable_path=str(executable), headless=True, args=["--disable-dev-shm-usage"]
        )
        yield browser
        browser.close()


def require_chromium(path: Path) -> Path:
    """``path`` if it is there; else fail (not skip) the test, saying how to install it."""
    if not path.exists():
        pytest.fail(
            f"{path} is missing: run `make services` (scripts/services.sh installs Debian's "
            "chromium package); the browser tests never download a browser"
        )
    return path


class Browse:
    """Opens pages of one server for one test; see ``__call__``."""

    def __init__(self, browser: Browser, test_name: str) -> None:
        self.browser = browser
        self.test_name = re.sub(r"[^\w.-]+", "_", test_name)
        self.opened = 0

    @contextmanager
    def __call__(
        self,
        server_url: str,
        *,
        width: int = DESKTOP_WIDTH,
        also: Collection[str] = (),
        **context_options: Any,
    ) -> Iterator[Page]:
        """A page that may load from ``server_url`` only; checked and screenshotted on exit.

        ``also`` lists other servers the test itself runs (a forging page on another origin);
        ``context_options`` go to Playwright's ``new_context`` (``timezone_id``, ``locale``).
        """
        allowed = {_netloc(url) for url in (server_url, *also)}
        blocked: list[str] = []
        errors: list[str] = []

        def only_the_server(route: Route) -> None:
            url = route.request.url
            if urlsplit(url).scheme in NETWORK_SCHEMES and _netloc(url) not in allowed:
                blocked.append(url)
                route.abort("blockedbyclient")
            else:
                route.continue_()

        context = self.browser.new_context(
            base_url=server_url,
            viewport={"width": width, "height": HEIGHTS.get(width, 900)},
            **context_options,
        )
        context.route("**/*", only_the_server)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        self.opened += 1
        shot = SCREENSHOTS / f"{self.test_name}-{self.opened}.png"
        try:
            yield page
        finally:
            SCREENSHOTS.mkdir(exist_ok=True)
            try:
                page.screenshot(path=shot, full_page=True)
                print(f"screenshot: {shot}")
            except PlaywrightError as error:  # a crashed page: keep the test's own failure
                print(f"no screenshot of {page.url}: {error}")
            context.close()
        assert not blocked, "the page requested other hosts than the server:\n" + "\n".join(blocked)
        assert not errors, "uncaught JavaScript errors:\n" + "\n".join(errors)


@pytest.fixture
def browse(chromium: Browser, request: pytest.FixtureRequest) -> Browse:
    """``with browse(server.url) as page:`` a page of the server under test (see ``Browse``)."""
    return Browse(chromium, request.node.name)


def set_width(page: Page, width: int) -> None:
    """Resize the page to ``width`` px (PHONE_WIDTH, DESKTOP_WIDTH) with a fitting height."""
    page.set_viewport_size({"width": width, "height": HEIGHTS.get(width, 900)})


def assert_accessible(page: Page) -> None:
    """Run the vendored axe-core on the page; fail listing every serious or critical violation."""
    # evaluate, not a <script> tag: it runs even where the page's CSP forbids inline scripts.
    page.evaluate(AXE.read_text(encoding="utf-8"))
    results: dict[str, Any] = page.evaluate("axe.run(document)")
    bad = [v for v in results["violations"] if v.get("impact") in BLOCKING_IMPACTS]
    assert not bad, f"accessibility violations on {page.url}:\n" + "\n".join(map(_describe, bad))


def _describe(violation: dict[str, Any]) -> str:
    targets = [" ".join(map(str, node["target"])) for node in violation["nodes"]]
    shown = ", ".join(targets[:5]) + (f" (+{len(targets) - 5} more)" if len(targets) > 5 else "")
    return (
        f"- {violation['id']} ({violation['impact']}): {violation['help']}\n"
        f"    at {shown}\n    see {violation['helpUrl']}"
    )


def _netloc(url: str) -> tuple[str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "ws": 80, "https": 443, "wss": 443}.get(parts.scheme)
    return (parts.hostname or "", parts.port or default)
