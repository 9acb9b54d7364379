"""`cloche tokens` through CliRunner, and `cloche up` as a real server process."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloche.auth.local_token import ensure_local_token, read_local_token
from cloche.config import Settings
from cloche.store.store import Store
from tests.e2e._cli import cloche, ok_json

CLOCHE = str(Path(sys.executable).with_name("cloche"))


def test_create_prints_the_token_once_with_a_warning() -> None:
    result = cloche("tokens", "create", "--role", "viewer", "--name", "dashboards")
    assert result.exit_code == 0, result.output
    token = re.search(r"cl_[0-9a-f]{12}_\S+", result.stdout)
    assert token is not None
    assert "will not be shown again" in result.stderr
    listed = cloche("tokens", "list")
    assert "dashboards" in listed.stdout and "viewer" in listed.stdout
    assert token.group(0) not in listed.stdout


def test_create_json_has_the_secret_and_list_json_does_not() -> None:
    new = ok_json("tokens", "create", "--role", "deployer")
    assert new["role"] == "deployer" and new["token"].startswith(f"cl_{new['id']}_")
    listed = ok_json("tokens", "list")
    assert [t["id"] for t in listed] == [new["id"]]
    assert "token" not in listed[0]


def test_revoke_marks_the_token_revoked() -> None:
    new = ok_json("tokens", "create", "--role", "predictor")
    result = cloche("tokens", "revoke", new["id"])
    assert result.exit_code == 0, result.output
    assert f"revoked predictor token {new['id']}" in result.stdout
    assert ok_json("tokens", "list")[0]["revoked_at"] is not None
    assert "revoked" in cloche("tokens", "list").stdout


def test_list_when_empty_says_how_to_create() -> None:
    assert "cloche tokens create" in cloche("tokens", "list").stdout


def test_bad_role_exits_2_and_names_the_roles() -> None:
    result = cloche("tokens", "create", "--role", "root")
    assert result.exit_code == 2
    assert "unknown role 'root'" in result.stderr
    assert "admin, publisher, deployer, edge" in result.stderr


def test_create_help_lists_every_role() -> None:
    result = cloche("tokens", "create", "--help", env={"COLUMNS": "200"})  # unwrapped
    assert result.exit_code == 0, result.output
    help_text = " ".join(result.stdout.split())
    for role in ("admin", "publisher", "deployer", "edge", "predictor", "viewer"):
        assert role in help_text
    assert "run code when loaded" in help_text


def test_revoking_an_unknown_token_exits_4() -> None:
    result = cloche("tokens", "revoke", "abcdef123456", "--json")
    assert result.exit_code == 4
    assert json.loads(result.stderr)["error"]["code"] == "token_not_found"


def test_tokens_local_prints_the_local_admin_token() -> None:
    settings = Settings()  # CLOCHE_HOME of this test
    store = Store.open(settings)
    try:
        ensure_local_token(store)
    finally:
        store.close()
    result = cloche("tokens", "local")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{read_local_token(settings.home)}\n"  # only the secret


def test_tokens_local_without_a_token_says_to_start_the_server() -> None:
    result = cloche("tokens", "local")
    assert result.exit_code == 4
    assert "no local admin token" in result.stderr and "cloche up" in result.stderr
    assert result.stdout == ""


def test_up_refuses_a_public_bind_without_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOCHE_AUTH__REQUIRED", "false")
    result = cloche("up", "--host", "0.0.0.0")
    assert result.exit_code == 2
    assert "refusing to serve on 0.0.0.0 without authentication" in result.stderr


def test_up_reports_a_busy_port_with_exit_6() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = cloche("up", "--port", str(busy.getsockname()[1]))
    assert result.exit_code == 6
    assert "cannot listen on 127.0.0.1" in result.stderr and "--port" in result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _lines(stream: Any) -> tuple[queue.Queue[str], threading.Thread]:
    """Lines of a pipe, read on a thread so the test can wait on them with a timeout."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    return lines, reader


def _read_banner(lines: queue.Queue[str], deadline: float) -> tuple[str, list[str]]:
    url = None
    seen: list[str] = []
    while not any("Ctrl-C" in line for line in seen) and time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        if m := re.search(r"running at (http://\S+)", line):
            url = m.group(1)
    assert url, f"no URL in the output of cloche up: {seen}"
    return url, seen


@pytest.mark.slow
def test_up_serves_the_registry_over_http_and_stops_cleanly(
    tmp_path: Path, sklearn_model_file: Path
) -> None:
    assert cloche("models", "upload", sklearn_model_file, "--name", "churn").exit_code == 0
    env = {**os.environ, "CLOCHE_HOME": str(tmp_path / "home")}
    server = subprocess.Popen(
        [CLOCHE, "up", "--port", str(_free_port())],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines, reader = _lines(server.stdout)
    home = tmp_path / "home"
    try:
        url, banner = _read_banner(lines, time.monotonic() + 60)
        token = read_local_token(home)
        assert token is not None
        assert not any(token in line for line in banner)  # the secret stays in its file
        assert "cloche tokens local" in "".join(banner)
        deadline = time.monotonic() + 60  # a bound on a loaded machine, not a measurement
        while True:
            try:
                refused = httpx.get(f"{url}/api/v1/models", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "cloche up never answered"
                time.sleep(0.1)
        assert refused.status_code == 401 and "cloche tokens local" in refused.text
        headers = {"Authorization": f"Bearer {token}"}
        listed = httpx.get(f"{url}/api/v1/models", headers=headers, timeout=5)
        assert listed.status_code == 200, listed.text
        assert [m["name"] for m in listed.json()] == ["churn"]

        # No CLOCHE_TOKEN: the CLI reads the local token by itself for a loopback URL.
        cli = subprocess.run(
            [CLOCHE, "models", "list", "--json"],
            env={**env, "CLOCHE_URL": url},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cli.returncode == 0, cli.stderr
        assert [m["name"] for m in json.loads(cli.stdout)] == ["churn"]

        # Owner-only: the home, its database and the token file.
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        assert stat.S_IMODE((home / "local-token").stat().st_mode) == 0o600
        assert stat.S_IMODE((home / "cloche.db").stat().st_mode) & 0o077 == 0
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            raise
        finally:
            reader.join(timeout=10)
            assert server.stdout is not None
            server.stdout.close()
    output = "".join(lines.queue)
    assert code == 0, output
    assert "cloche stopped" in output
