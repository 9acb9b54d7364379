"""The docs cannot drift from the code: the site builds with --strict (a broken link, a missing
page or an SDK/CLI reference that no longer resolves fails), and the examples run.

The README's and the guides' examples (Python, doctest, ```console and ```bash blocks) run with
sybil against one real `cloche up` started for the session, each page in a folder of its own
holding the files `python examples/make_churn.py` makes, its shown output compared (see
_docs.py). The other pages' ```python blocks run offline, as they stand.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e._docs import SHELL_BLOCK, page_shell, run_page
from tests.e2e._servers import cloche_up, server_env

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
# The pages whose every example runs against a server; the others' Python blocks run offline.
GUIDES = [ROOT / "README.md", DOCS / "getting-started.md", *sorted((DOCS / "guides").glob("*.md"))]
OFFLINE = [p for p in sorted(DOCS.rglob("*.md")) if p not in GUIDES]
FENCE = re.compile(r"^```(\w*)", re.MULTILINE)


def test_the_site_builds_with_strict_and_no_warnings(tmp_path: Path) -> None:
    # A subprocess: mkdocs and its plugins emit DeprecationWarnings that pytest's "error" filter
    # would turn into failures of code that is not ours; --strict already fails on mkdocs' own.
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    # The generated references are there, not empty stubs.
    cli = (tmp_path / "reference" / "cli.html").read_text()
    assert "cloche models upload" in cli
    assert "--baseline FILE" in cli  # options too, not only the commands' names
    sdk = (tmp_path / "reference" / "sdk.html").read_text()
    assert "Register a model file or folder" in sdk
    # SECURITY.md is included, not copied.
    assert "Reporting a vulnerability" in (tmp_path / "security.html").read_text()


def test_the_site_fetches_nothing_from_the_internet(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        check=True,
        timeout=120,
    )
    for page in tmp_path.rglob("*.html"):
        html = page.read_text()
        assert "fonts.googleapis" not in html, page
        assert "fonts.gstatic" not in html, page
        # Scripts and images come from the site itself (Material's bundle would fetch mermaid
        # from unpkg only for a mermaid diagram, and GitHub's API only with a repo_url: neither).
        assert 'src="http' not in html, page


def test_some_page_has_a_python_example() -> None:
    assert any("```python" in page.read_text() for page in [*OFFLINE, *GUIDES])


@pytest.mark.parametrize("page", OFFLINE, ids=lambda p: str(p.relative_to(DOCS)))
def test_every_python_block_of_a_page_runs(page: Path) -> None:
    run_page(page, shells=False)


class Receiver(BaseHTTPRequestHandler):
    """A webhook on loopback, the alert examples' channel: takes every POST with a 200, which
    the pages show as `delivered`."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Guides:
    """The session's `cloche up`, the environment its pages' examples run in, their files."""

    env: dict[str, str]
    data: Path  # what examples/make_churn.py made; each page gets a copy


@pytest.fixture(scope="session")
def guides(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guides]:
    base = tmp_path_factory.mktemp("guides")
    data = base / "data"
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "make_churn.py"), str(data)],
        check=True,
        timeout=300,
    )
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    grpc_port, edge_port = free_port(), free_port()
    allow = {
        "CLOCHE_EGRESS__ALLOW": "127.0.0.1",  # the webhook receiver, and edge sync to the server
        "CLOCHE_BATCH__ALLOWED_DIRS": json.dumps([str(base)]),  # jobs sent to the server
        "CLOCHE_SERVING__GRPC_PORT": str(grpc_port),
    }
    try:
        with cloche_up(base / "home", env=allow) as server:
            env = server_env(server.home, allow)
            env.update(
                CLOCHE_URL=server.url,
                CLOCHE_TOKEN=server.auth["Authorization"].removeprefix("Bearer "),
                GRPC_ADDRESS=f"127.0.0.1:{grpc_port}",
                EDGE_PORT=str(edge_port),  # for the edge guide's `cloche serve`
                WEBHOOK_URL=f"http://127.0.0.1:{receiver.server_address[1]}/hooks/ops",
                PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                COLUMNS="100",  # the CLI's tables wrap as the pages show them
                NO_COLOR="1",
                TERM="dumb",
            )
            env.pop("CLOCHE_SERVING__POLL_MS", None)
            yield Guides(env, data)
    finally:
        receiver.shutdown()
        receiver.server_close()


@pytest.mark.slow
@pytest.mark.parametrize("page", GUIDES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_of_a_guide_runs_against_cloche_up(
    page: Path, guides: Guides, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = page.read_text()
    # A fence in another language would be skipped silently (```sh, ```shell): the examples are
    # python, console and bash; text and data formats for what is not run (a long-running
    # `cloche up`, `make test` itself, a file's contents).
    runnable, inert = {"python", "console", "bash"}, {"", "text", "json", "yaml", "toml", "ini"}
    assert set(FENCE.findall(text)) <= runnable | inert, page
    # Under the server's CLOCHE_BATCH__ALLOWED_DIRS, as a user's files would be for a job it runs.
    folder = guides.data.parent / "pages" / str(page.relative_to(ROOT)).replace("/", "-")
    shutil.copytree(guides.data, folder)
    monkeypatch.chdir(folder)
    for key in [k for k in os.environ if k.startswith("CLOCHE_")]:
        monkeypatch.delenv(key)
    for key, value in guides.env.items():
        monkeypatch.setenv(key, value)  # for the Python blocks, as the shell blocks have it
    with page_shell(folder, dict(guides.env)) as terminal:
        ran = run_page(page, shells=True, terminal=terminal)
    # Each block is at least one example (a doctest block is one per `>>>`): none was skipped.
    blocks = text.count("```python") + len(SHELL_BLOCK.findall(text))
    assert ran >= blocks > 0, f"{ran} examples ran, the page has {blocks} blocks"
