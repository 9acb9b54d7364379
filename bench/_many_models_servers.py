"""The servers bench/many_models.py measures: cloche and MLServer, started on loopback in their
own process groups (so stopping one stops its workers too), and a thread that samples the
resident memory of a server's whole process tree."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
CLOCHE = str(Path(sys.executable).parent / "cloche")
MLSERVER_VENV = REPO / ".cache" / "bench-mlserver-venv"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Children a cloche server starts for a moment, not part of its steady footprint: the payload
# log's compaction (a niced process per worker, each time segments close) and the child that
# measures a model's resident size (at a deploy under a budget) or inspects an upload.
TRANSIENT = ("cloche.logs.compact", "cloche.registry.inspect_child")


class PeakMemory:
    """Samples the summed RSS of a process and all its descendants every ``every`` seconds,
    in a thread, keeping the peak. Workers forked later are found at the next sample.

    Each sample is also split: the server's own processes (the parent, its workers) and the
    transient children (``TRANSIENT``), whose peaks are kept apart (``peak_own``,
    ``transient_peak``): a transient is counted in the raw peak only, once, at its size then."""

    def __init__(self, pid: int, every: float = 0.05) -> None:
        self.peak = 0
        self.peak_own = 0
        self.transient_peak = 0
        self._root = psutil.Process(pid)
        self._every = every
        self._stop = threading.Event()
        self._transient: dict[tuple[int, float], bool] = {}  # (pid, start time) -> transient
        self._thread = threading.Thread(target=self._run, name="peak-memory", daemon=True)

    def _is_transient(self, proc: psutil.Process) -> bool:
        key = (proc.pid, proc.create_time())
        if key not in self._transient:
            command = " ".join(proc.cmdline())
            self._transient[key] = any(name in command for name in TRANSIENT)
        return self._transient[key]

    def _tree_rss(self) -> tuple[int, int]:
        """(own, transient) bytes now."""
        own = transient = 0
        try:
            procs = [self._root, *self._root.children(recursive=True)]
        except psutil.Error:
            return 0, 0
        for proc in procs:
            # A worker may exit between listing and reading.
            with contextlib.suppress(psutil.Error):
                rss = proc.memory_info().rss
                if self._is_transient(proc):
                    transient += rss
                else:
                    own += rss
        return own, transient

    def _run(self) -> None:
        while not self._stop.is_set():
            own, transient = self._tree_rss()
            self.peak = max(self.peak, own + transient)
            self.peak_own = max(self.peak_own, own)
            self.transient_peak = max(self.transient_peak, transient)
            self._stop.wait(self._every)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def cloche_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOCHE_")}
    env["CLOCHE_HOME"] = str(home)
    # The stage timings tell a cold load from a hit once the model cache reports loads there.
    env["CLOCHE_SERVING__SERVER_TIMING"] = "true"
    return env


def knows_model_memory() -> bool:
    """Whether this checkout's `cloche up` has the memory budget flag yet."""
    out = subprocess.run(
        [CLOCHE, "up", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    return "--model-memory" in out.stdout


@contextmanager
def running(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``cmd`` in its own process group, its output in ``log``; on leaving (also on Ctrl-C or
    an error) SIGTERM to the group, SIGKILL after 30 s."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            _stop_group(proc)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            # The leader is gone; its workers may not be yet.
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Until ``url`` answers 200; exits with the server's log when it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    sys.exit(f"{url} was not ready within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def cloche_command(port: int, workers: int, model_memory: str | None) -> list[str]:
    cmd = [CLOCHE, "up", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    return [*cmd, "--model-memory", model_memory] if model_memory else cmd


# --- MLServer ------------------------------------------------------------------------------


def ensure_mlserver() -> Path:
    """MLServer in its own venv (built once): the sklearn that pickled the models, so both
    servers unpickle the same files."""
    import sklearn

    mlserver = MLSERVER_VENV / "bin" / "mlserver"
    if mlserver.exists():
        return mlserver
    print(f"creating {MLSERVER_VENV} (MLServer and its sklearn runtime)...", file=sys.stderr)
    # The machine's python3, not this venv's: MLServer's venv must not see cloche's packages.
    python = shutil.which("python3") or sys.exit("python3 is not on PATH")
    subprocess.run([python, "-m", "venv", str(MLSERVER_VENV)], check=True)
    subprocess.run(
        [
            str(MLSERVER_VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
            "mlserver", "mlserver-sklearn", f"scikit-learn=={sklearn.__version__}",
            # MLServer 1.7's parallel workers call asyncio.get_event_loop() in a fresh
            # process, which uvloop 0.22+ refuses ("no current event loop"): they all die.
            "uvloop<0.22",
        ],
        check=True,
    )  # fmt: skip
    return mlserver


def mlserver_models_dir(root: Path, models: dict[str, Path], workers: int, port: int) -> Path:
    """MLServer's multi-model layout: settings.json at the root, one folder per model with its
    model-settings.json naming the sklearn runtime and the model file."""
    root.mkdir(parents=True, exist_ok=True)
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_endpoint": None,  # no metrics server: one port less, nothing measured there
        # Set explicitly: MLServer 1.7's default worker mode crashes on uvloop 0.23.
        "parallel_workers": workers,
        "load_models_at_startup": True,
    }
    (root / "settings.json").write_text(json.dumps(settings))
    for name, path in models.items():
        folder = root / name
        folder.mkdir(exist_ok=True)
        model_settings = {
            "name": name,
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": str(path), "version": "v1"},
        }
        (folder / "model-settings.json").write_text(json.dumps(model_settings))
    return root
