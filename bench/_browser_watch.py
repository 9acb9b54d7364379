"""A person watching an endpoint's charts in the console, for bench/serving.py --browser.

Debian's headless Chromium (never a downloaded one), launched by Playwright as the e2e tests
do (tests/e2e/_browser.py), signs in with the machine's local credential and keeps
/console/endpoints/ENDPOINT open: its charts load, then refresh on the page's own timer.
Prints "ready" and the seconds the page took to load, once it has; on a line on stdin (or its
end) prints how many chart refreshes the server answered and exits. Run it pinned
(``taskset -c 1``): Chromium's processes inherit the pin, so the browser competes with wrk,
not with the server.

    python bench/_browser_watch.py http://127.0.0.1:PORT ENDPOINT
    python bench/_browser_watch.py http://127.0.0.1:PORT -     # the control: a blank page

The control signs in, then leaves the console for a blank page: the same browser on the same
CPU, asking the server nothing, so what it costs the load generator is told apart from what the
console costs the server.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
LOCAL_BUTTON = "Sign in with this machine's local credential"


def main() -> None:
    url, endpoint = sys.argv[1], sys.argv[2]
    if not CHROMIUM.exists():
        sys.exit(f"{CHROMIUM} is missing: `make services` installs Debian's chromium package")
    refreshes = 0
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--disable-dev-shm-usage"]
        )
        page = browser.new_context(base_url=url).new_page()
        page.goto("/console/sign-in")
        page.get_by_role("button", name=LOCAL_BUTTON).click()
        page.wait_for_url("**/console/")
        began = time.perf_counter()
        if endpoint == "-":
            page.goto("about:blank")
            print("ready 0.0", flush=True)
            while not _stdin_ready():
                page.wait_for_timeout(500)
            print("refreshes 0", flush=True)
            browser.close()
            return
        page.goto(f"/console/endpoints/{endpoint}")
        page.locator("#endpoint-traffic[data-traffic]").wait_for(timeout=60_000)  # loaded
        # Its other sections (the payload log's newest rows, shadow agreement) load once, at
        # first: measure from when the page is open and only its timer asks for more.
        page.wait_for_load_state("networkidle", timeout=120_000)
        loaded = time.perf_counter() - began

        def counted(response: object) -> None:
            nonlocal refreshes
            if "/traffic" in getattr(response, "url", ""):
                refreshes += 1

        page.on("response", counted)
        print(f"ready {loaded:.1f}", flush=True)
        # The page's own timers run while Playwright waits for the next line.
        while True:
            page.wait_for_timeout(500)
            if _stdin_ready():
                break
        print(f"refreshes {refreshes}", flush=True)
        browser.close()


def _stdin_ready() -> bool:
    import select

    ready, _, _ = select.select([sys.stdin], [], [], 0)
    return bool(ready)


if __name__ == "__main__":
    main()
