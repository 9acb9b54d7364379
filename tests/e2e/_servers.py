"""`cloche up` as a real subprocess: start on a free port, wait until ready, find workers, stop.

Every process is started in its own session, so a stop that times out can end the supervisor
and its workers together through the group of the process this module started, never by name.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

URL_LINE = re.compile(r"cloche is running at (http://\S+)")
START_SECONDS = 60.0  # a cold start imports numpy, scikit-learn, SQLAlchemy... on 2 cores
STOP_SECONDS = 20.0


class ServerFailed(RuntimeError):
    """`cloche up` exited or did not become ready; the message ends with its log."""


@dataclass
class UpProcess:
    """One running `cloche up`: its process, log file and URL."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    url: str = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def home(self) -> Path:
        return self.log_path.parent

    @property
    def auth(self) -> dict[str, str]:
        """Headers with the local admin token `cloche up` wrote to its home."""
        token = (self.home / "local-token").read_text().strip()
        return {"Authorization": f"Bearer {token}"}

    def fail(self, why: str) -> ServerFailed:
        return ServerFailed(f"{why}\n--- cloche up log ---\n{self.log()[-4000:]}")

    def worker_pids(self) -> set[int]:
        """PIDs of the live worker processes (uvicorn spawns them with multiprocessing)."""
        try:
            children = psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return set()
        pids = set()
        for child in children:
            try:
                alive = child.status() != psutil.STATUS_ZOMBIE
                if alive and any("spawn_main" in part for part in child.cmdline()):
                    pids.add(child.pid)
            except psutil.NoSuchProcess:
                continue
        return pids

    def wait_for_workers(
        self, count: int, *, timeout: float, exclude: Collection[int] = ()
    ) -> set[int]:
        """Wait until exactly ``count`` workers live, none of them in ``exclude``; their PIDs."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.worker_pids()
            if len(pids) == count and pids.isdisjoint(exclude):
                return pids
            if self.proc.poll() is not None:
                raise self.fail(f"cloche up exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise self.fail(f"wanted {count} new workers within {timeout} s, have {pids}")
            time.sleep(0.05)

    def wait_ready(self, *, timeout: float = START_SECONDS) -> None:
        """Wait for the banner's URL, then for GET /v2/health/ready to answer 200."""
        deadline = time.monotonic() + timeout
        while not self.url:
            found = URL_LINE.search(self.log())
            if found:
                self.url = found.group(1)
                break
            self._check_alive(deadline, "printed no URL")
            time.sleep(0.05)
        with httpx.Client(base_url=self.url, timeout=2.0) as http:
            while True:
                try:
                    if http.get("/v2/health/ready").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                self._check_alive(deadline, "was not ready")
                time.sleep(0.05)

    def _check_alive(self, deadline: float, what: str) -> None:
        if self.proc.poll() is not None:
            raise self.fail(f"cloche up exited with {self.proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise self.fail(f"cloche up {what} in time")

    def terminate(self, *, timeout: float = STOP_SECONDS) -> int:
        """SIGTERM and wait for the exit code; past ``timeout`` kill the process group."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            raise self.fail(f"cloche up did not stop within {timeout} s of SIGTERM") from None

    def kill_group(self) -> None:
        """SIGKILL the supervisor and every worker left (they share its process group)."""
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


def cloche_command(*args: str) -> list[str]:
    """The `cloche` console script of this interpreter's environment, with ``args``."""
    script = Path(sys.executable).with_name("cloche")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-c", "from cloche.cli.launch import main; main()", *args]


def server_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment minus its CLOCHE_* settings, on ``home``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOCHE_")}
    env.update(CLOCHE_HOME=str(home), CLOCHE_SERVING__POLL_MS="100", PYTHONUNBUFFERED="1")
    env.update(extra or {})
    return env


@contextmanager
def cloche_up(
    home: Path,
    *,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
    wait: bool = True,
    cwd: Path | None = None,
) -> Iterator[UpProcess]:
    """Run `cloche up --port 0 --workers N` on ``home``, in ``cwd`` (where the pipelines it
    runs find relative paths); it is always stopped on exit."""
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / f"up-{time.monotonic_ns()}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cloche_command("up", "--port", "0", "--workers", str(workers)),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_env(home, env),
            cwd=cwd,
            start_new_session=True,
        )
    server = UpProcess(proc, log_path)
    try:
        if wait:
            server.wait_ready()
        yield server
    finally:
        if server.proc.poll() is None:
            with suppress(ServerFailed):
                server.terminate()
        server.kill_group()  # workers left behind by a killed supervisor go too
