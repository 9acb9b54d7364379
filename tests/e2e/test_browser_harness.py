"""The browser harness itself: it blocks other hosts, reports page errors and axe violations.

These pages are set inline (``set_content``), so no server is needed; what the harness does with
them is what it does with the console's pages.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e._browser import (
    DESKTOP_WIDTH,
    PHONE_WIDTH,
    SCREENSHOTS,
    Browse,
    assert_accessible,
    browse,
    chromium,
    require_chromium,
    set_width,
)

__all__ = ["browse", "chromium"]  # fixtures, imported for pytest

SERVER = "http://127.0.0.1:9"  # never contacted: the pages below are set inline
GOOD_PAGE = """<!doctype html><html lang="en"><head><title>fine</title></head>
<body><main><h1>Models</h1><label for="q">Search</label><input id="q">
<button>Find</button></main></body></html>"""
BAD_PAGE = """<!doctype html><html lang="en"><head><title>bad</title></head>
<body><main><h1>Models</h1><input id="q" type="text"><img src="data:,">
<button></button></main></body></html>"""


def test_a_request_to_another_host_fails_the_test(browse: Browse) -> None:
    blocked = r"other hosts.*\n.*cdn\.example/lib\.js"
    with pytest.raises(AssertionError, match=blocked), browse(SERVER) as page:
        page.set_content('<script src="https://cdn.example/lib.js"></script>')


def test_an_uncaught_script_error_fails_the_test(browse: Browse) -> None:
    error = r"uncaught JavaScript errors:\n.*no such thing"
    with pytest.raises(AssertionError, match=error), browse(SERVER) as page:
        page.set_content("<script>throw new Error('no such thing')</script>")


def test_a_page_with_no_violation_is_accessible(browse: Browse) -> None:
    with browse(SERVER) as page:
        page.set_content(GOOD_PAGE)
        assert_accessible(page)


def test_serious_violations_are_listed_by_rule_and_element(browse: Browse) -> None:
    with browse(SERVER) as page:
        page.set_content(BAD_PAGE)
        with pytest.raises(AssertionError) as failed:
            assert_accessible(page)
    message = str(failed.value)
    for rule in ("button-name (critical)", "image-alt (critical)", "label (critical)"):
        assert rule in message, message
    assert "at img" in message and "see https://" in message


def test_each_page_leaves_a_screenshot_at_the_width_asked(
    browse: Browse, request: pytest.FixtureRequest
) -> None:
    with browse(SERVER, width=DESKTOP_WIDTH) as page:
        page.set_content(GOOD_PAGE)
        assert page.viewport_size == {"width": DESKTOP_WIDTH, "height": 900}
        set_width(page, PHONE_WIDTH)
        assert page.evaluate("window.innerWidth") == PHONE_WIDTH
    shot = SCREENSHOTS / f"{request.node.name}-1.png"
    assert shot.read_bytes().startswith(b"\x89PNG")


def test_a_missing_chromium_fails_and_says_to_run_make_services(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match=r"run `make services`"):
        require_chromium(tmp_path / "chromium")
