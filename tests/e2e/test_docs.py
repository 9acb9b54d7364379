"""The docs site cannot drift from the code: it builds with --strict (a broken link, a missing
page or an SDK/CLI reference that no longer resolves fails), and every ```python block of its
pages runs. Shell blocks are ```console and are not run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mktestdocs import check_md_file

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "docs").rglob("*.md"))


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
    assert any("```python" in page.read_text() for page in PAGES)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT / "docs")))
def test_every_python_block_of_a_page_runs(page: Path) -> None:
    check_md_file(fpath=page, memory=True)  # blocks of a page share their names, in order
