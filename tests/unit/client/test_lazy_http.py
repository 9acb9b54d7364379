"""The in-process SDK never loads httpx: `make demo` reaches its first prediction through it, and
httpx's import (its command-line entry point pulls in click and pygments) only slowed that down.
The HTTP transport imports it where it makes requests."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import cloche
from cloche import errors

CHILD = textwrap.dedent(
    """
    import sys
    import cloche
    with cloche.Client(home=sys.argv[1]) as client:
        client.models.list()
    print("httpx" in sys.modules)
    """
)


def test_the_in_process_client_lists_models_without_importing_httpx(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "home")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


def test_the_http_transport_still_maps_an_unreachable_server_to_unavailable() -> None:
    # Port 9 (discard) on loopback: nothing listens there, so the connection is refused.
    with (
        cloche.Client("http://127.0.0.1:9", token="t") as client,
        pytest.raises(errors.Unavailable, match="cannot reach the cloche server"),
    ):
        client.models.list()
