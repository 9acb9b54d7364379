"""`cloche serve DIR` as a real process: predictions on both protocols, the spool, refusals."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from cloche.edge.spool import segment_files
from tests.e2e._servers import cloche_command, cloche_up, server_env
from tests.unit.edge._bundles import native_bundle

URL_LINE = re.compile(r"at (http://\S+)")
START_SECONDS = 60.0
ROW = [0.5, -1.0, 2.0, 0.1]


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return native_bundle(tmp_path / "churn-edge")


@contextmanager
def edge_server(
    bundle: Path, *args: str, env: Mapping[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`cloche serve BUNDLE --port 0 ARGS`, ready; its output goes to a file beside the bundle."""
    log_path = bundle.parent / f"serve-{time.monotonic_ns()}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cloche_command("serve", str(bundle), "--port", "0", *args),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_env(bundle.parent / "home", env),
        )
    try:
        deadline = time.monotonic() + START_SECONDS
        url = ""
        while True:
            found = URL_LINE.search(log_path.read_text())
            url = url or (found.group(1) if found else "")
            if url and _ready(url):
                break
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, f"not ready in time: {log_path.read_text()}"
            time.sleep(0.05)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def logged_rows(bundle: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in segment_files(bundle / "spool"))


def test_a_bundle_serves_v1_and_v2_validates_and_spools_every_answer(bundle: Path) -> None:
    with edge_server(bundle) as (url, proc):
        v1 = httpx.post(f"{url}/v1/models/churn:predict", json={"instances": [ROW, ROW]})
        assert v1.status_code == 200, v1.text
        assert v1.json()["predictions"] in ([0, 0], [1, 1])
        named = [
            {"name": n, "shape": [1], "datatype": "FP64", "data": [v]}
            for n, v in zip(["tenure", "spend", "visits", "age"], ROW, strict=True)
        ]
        v2 = httpx.post(f"{url}/v2/models/churn/infer", json={"inputs": named})
        assert v2.status_code == 200, v2.text
        assert v2.json()["model_name"] == "churn"
        bad = httpx.post(f"{url}/v1/models/churn:predict", json={"instances": [[1, 2]]})
        assert bad.status_code == 422
        assert "4" in bad.json()["error"]["message"]
        feedback = httpx.post(f"{url}/v1/models/churn:feedback", json={"labels": []})
        assert feedback.status_code == 404
        assert "central server" in feedback.json()["error"]["hint"]
        metrics = httpx.get(f"{url}/metrics").text
        assert "cloche_spool_refused_rows_total 0" in metrics
        assert proc.poll() is None
    # A graceful stop: uvicorn drains, then re-raises the SIGTERM it caught.
    assert proc.returncode in (0, -15)
    assert logged_rows(bundle) == 3  # two answers and the refused request, as `cloche up` logs


def test_a_tampered_bundle_is_refused_naming_the_file(bundle: Path) -> None:
    (bundle / "model" / "model.joblib").write_bytes(b"not the model")
    done = subprocess.run(
        cloche_command("serve", str(bundle)), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "model/model.joblib has changed since export" in done.stderr
    assert "hint:" in done.stderr


def test_serving_beyond_loopback_needs_a_token_and_then_requires_it(bundle: Path) -> None:
    done = subprocess.run(
        cloche_command("serve", str(bundle), "--host", "0.0.0.0"),
        capture_output=True,
        text=True,
        timeout=60,
        env=server_env(bundle.parent / "home"),
    )
    assert done.returncode == 2
    assert "CLOCHE_EDGE_TOKEN" in done.stderr
    with edge_server(bundle, env={"CLOCHE_EDGE_TOKEN": "s3cret"}) as (url, _):
        body = {"instances": [ROW]}
        assert httpx.post(f"{url}/v1/models/churn:predict", json=body).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (
            httpx.post(f"{url}/v1/models/churn:predict", json=body, headers=wrong).status_code
            == 401
        )
        right = {"Authorization": "Bearer s3cret"}
        assert (
            httpx.post(f"{url}/v1/models/churn:predict", json=body, headers=right).status_code
            == 200
        )


def test_at_the_spool_cap_rows_are_refused_and_counted(bundle: Path) -> None:
    with edge_server(bundle, "--spool-max-mb", "0.001") as (url, _):  # about 1 KB: a few rows
        for _ in range(20):
            assert (
                httpx.post(f"{url}/v1/models/churn:predict", json={"instances": [ROW]}).status_code
                == 200
            )
        metrics = httpx.get(f"{url}/metrics").text
    refused = int(re.search(r"cloche_spool_refused_rows_total (\d+)", metrics).group(1))  # type: ignore[union-attr]
    assert refused > 0
    assert logged_rows(bundle) + refused == 20


LOOPBACK = {"CLOCHE_EGRESS__ALLOW": "127.0.0.1"}  # the central server of these tests


def run_cli(
    home: Path, *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cloche_command(*(str(a) for a in args)),
        capture_output=True,
        text=True,
        timeout=120,
        env=server_env(home, env),
    )


def test_export_serve_offline_then_sync_and_the_central_monitor_counts_the_edge_rows(
    tmp_path: Path, sklearn_model_file: Path, sample_parquet: Path
) -> None:
    central = tmp_path / "central"
    for args in (
        ("models", "upload", sklearn_model_file, "--name", "churn"),
        ("models", "baseline", "churn:1", sample_parquet),
        ("endpoints", "create", "plant-7"),
        ("endpoints", "deploy", "plant-7", "churn:1"),
        ("export", "churn:1", "--out", tmp_path / "churn-edge"),
    ):
        done = run_cli(central, *args)
        assert done.returncode == 0, f"{args}: {done.stderr}"
    bundle = tmp_path / "churn-edge"
    with edge_server(bundle) as (url, _):
        for i in range(30):
            row = [i / 10, -1.0, 2.0, 0.1]
            answer = httpx.post(f"{url}/v1/models/churn:predict", json={"instances": [row]})
            assert answer.status_code == 200, answer.text
    assert logged_rows(bundle) == 30
    edge_token = run_cli(central, "tokens", "create", "--role", "edge").stdout.strip()
    predictor = run_cli(central, "tokens", "create", "--role", "predictor").stdout.strip()
    with cloche_up(central, env={"CLOCHE_AUTH__REQUIRED": "true"}) as server:
        sync = ("edge", "sync", bundle, "--to", server.url, "--endpoint", "plant-7")
        not_allowed = run_cli(central, *sync, "--token", edge_token)
        assert not_allowed.returncode == 3 and "CLOCHE_EGRESS__ALLOW" in not_allowed.stderr
        refused = run_cli(central, *sync, "--token", predictor, env=LOOPBACK)
        assert refused.returncode == 3 and "--role edge" in refused.stderr
        done = run_cli(central, *sync, "--token", edge_token, env=LOOPBACK)
        assert done.returncode == 0, done.stderr
        assert "uploaded 30 rows" in done.stdout
        again = run_cli(central, *sync, "--token", edge_token, env=LOOPBACK)
        assert again.returncode == 0 and "uploaded 0 rows" in again.stdout
    assert run_cli(central, "monitors", "create", "plant-7", "--window", "1h").returncode == 0
    run = run_cli(central, "monitors", "run", "plant-7", "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["rows"] == 30


def test_sync_to_an_unreachable_server_exits_6_and_keeps_the_spool(bundle: Path) -> None:
    with edge_server(bundle) as (url, _):
        httpx.post(f"{url}/v1/models/churn:predict", json={"instances": [ROW]})
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = run_cli(
        bundle.parent, "edge", "sync", bundle, "--to", f"http://127.0.0.1:{port}", env=LOOPBACK
    )
    assert done.returncode == 6
    assert "cannot reach the central server" in done.stderr and "nothing was lost" in done.stderr
    assert logged_rows(bundle) == 1


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed when the block ends: nothing listens there


def test_sync_with_an_empty_spool_to_an_unreachable_server_still_exits_6(bundle: Path) -> None:
    # Nothing to upload must not read as "synced": a cron job would never see the link is down.
    url = f"http://127.0.0.1:{closed_port()}"
    done = run_cli(bundle.parent, "edge", "sync", bundle, "--to", url, env=LOOPBACK)
    assert done.returncode == 6, (done.stdout, done.stderr)
    assert f"cannot reach the central server at {url}" in done.stderr
    assert "uploaded" not in done.stdout


def test_sync_with_an_empty_spool_to_a_reachable_server_succeeds(
    bundle: Path, tmp_path: Path
) -> None:
    with cloche_up(tmp_path / "central") as server:
        done = run_cli(bundle.parent, "edge", "sync", bundle, "--to", server.url, env=LOOPBACK)
    assert done.returncode == 0, done.stderr
    assert "uploaded 0 rows" in done.stdout


def test_bad_edge_command_lines_say_what_to_do(bundle: Path) -> None:
    home = bundle.parent
    bad_url = run_cli(home, "edge", "sync", bundle, "--to", "ftp://central")
    assert bad_url.returncode == 2 and "http(s) URL" in bad_url.stderr
    not_a_bundle = run_cli(home, "edge", "sync", home, "--to", "http://127.0.0.1:1")
    assert not_a_bundle.returncode == 2 and "no manifest.json" in not_a_bundle.stderr
    assert run_cli(home, "edge", "push").returncode == 2
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = run_cli(home, "serve", bundle, "--port", port)
    assert busy.returncode == 2 and "cannot listen on" in busy.stderr and "--port" in busy.stderr
    full = run_cli(home, "serve", bundle, "--spool-full", "sometimes")
    assert full.returncode == 2 and "drop-oldest" in full.stderr
