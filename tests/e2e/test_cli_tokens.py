"""`cloche tokens` through CliRunner, and `cloche up` as a real server process."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

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


def test_revoking_an_unknown_token_exits_4() -> None:
    result = cloche("tokens", "revoke", "abcdef123456", "--json")
    assert result.exit_code == 4
    assert json.loads(result.stderr)["error"]["code"] == "token_not_found"


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


def _read_banner(lines: queue.Queue[str], deadline: float) -> tuple[str, str]:
    url = token = None
    seen = []
    while (url is None or token is None) and time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        if m := re.search(r"running at (http://\S+)", line):
            url = m.group(1)
        if m := re.search(r"^\s+(cl_\S+)\s*$", line):
            token = m.group(1)
    assert url and token, f"no URL and admin token in the output of cloche up: {seen}"
    return url, token


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
    try:
        url, token = _read_banner(lines, time.monotonic() + 60)
        headers = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 30
        while True:
            try:
                listed = httpx.get(f"{url}/api/v1/models", headers=headers, timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "cloche up never answered"
                time.sleep(0.1)
        assert listed.status_code == 200, listed.text
        assert [m["name"] for m in listed.json()] == ["churn"]

        cli = subprocess.run(
            [CLOCHE, "models", "list", "--json"],
            env={**env, "CLOCHE_URL": url, "CLOCHE_TOKEN": token},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cli.returncode == 0, cli.stderr
        assert [m["name"] for m in json.loads(cli.stdout)] == ["churn"]
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
