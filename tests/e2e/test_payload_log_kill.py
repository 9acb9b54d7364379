"""A server killed with SIGKILL under load has logged every prediction it answered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

import cloche
from cloche.config import Settings

CLOCHE = str(Path(sys.executable).parent / "cloche")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_sigkill_loses_no_answered_prediction(tmp_path: Path, sklearn_model_file: Path) -> None:
    home = tmp_path / "home"
    sdk = cloche.Client(settings=Settings(home=home))
    sdk.models.upload(sklearn_model_file, name="churn")
    sdk.endpoints.create("churn")
    sdk.endpoints.deploy("churn", "churn:1")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOCHE_")}
    env["CLOCHE_HOME"] = str(home)
    proc = subprocess.Popen(
        [CLOCHE, "up", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1/models/churn:predict"
    answered: list[str] = []
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(timeout=5) as client:
            i = 0
            while not stop.is_set():
                rid = f"w{worker}-{i}"
                i += 1
                try:
                    r = client.post(
                        url,
                        json={"instances": [[0.1, 0.2, 0.3, 0.4]]},
                        headers={"X-Request-Id": rid},
                    )
                except httpx.HTTPError:
                    continue
                if r.status_code == 200:
                    answered.append(rid)

    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        while len(answered) < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        stop.set()
        for t in threads:
            t.join(timeout=10)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert len(answered) >= 300
    logged = set(sdk.logs.read("churn", since="1h", limit=100_000)["request_id"].to_pylist())
    missing = [rid for rid in answered if rid not in logged]
    assert not missing, f"{len(missing)} answered predictions are not in the log: {missing[:5]}"
