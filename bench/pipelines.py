"""Pipelines: the per-step overhead of each executor, against a plain loop and against Prefect.

Two pipelines of trivial components, run with each executor (in-process, process, and Ray on a
local Ray started once before the timings: its start-up, ~10 s, is not a step's overhead) in a
throwaway CLOCHE_HOME with every step's record written to its store (SQLite):

- chain: 200 steps, each adding 1 to its upstream's output (a line: no two steps at once);
- fan: 20 independent steps that each sleep 0.1 s, with 2 workers.

The reference is the same functions called in a plain loop (the fan in a pool of 2 threads);
the peer (``--prefect``) is the same pipelines as Prefect flows and tasks, in a venv of its own
made with uv on first use (~/.cache/cloche-bench/prefect-VERSION; `--prefect-version`, default
the release last measured, pinned because its cost moves between releases). Overhead per step is
(pipeline time - plain time) / steps.

    .venv/bin/python bench/pipelines.py [--prefect] [--repeat 3] [--executors process,ray]

Goals (issue 17): in-process <= 5 ms per step with the records; process <= 150 ms; Ray <= 50 ms
once its cluster is up; the 20 x 0.1 s fan in <= 1.2 s with 2 workers; each executor at least as
fast per step as Prefect's.
Compare figures from one run; the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CHAIN, FAN, NAP = 200, 20, 0.1
EXECUTORS = ("inprocess", "process", "ray")
PREFECT_VENVS = Path.home() / ".cache" / "cloche-bench"
# Pinned: Prefect's per-step cost moved 5-80 ms between its releases (3.9 serves its ephemeral
# API from a separate uvicorn process), so a figure names the version it was measured on.
PREFECT_VERSION = "3.9.1"

PREFECT_SCRIPT = r"""
import json, sys, time
from prefect import flow, task
from prefect.task_runners import ThreadPoolTaskRunner

CHAIN, FAN, NAP = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])

@task
def add_one(n: int) -> int:
    return n + 1

@task
def nap(i: int) -> int:
    time.sleep(NAP)
    return i

@flow
def chain() -> int:
    value = 0
    for _ in range(CHAIN):
        value = add_one(value)
    return value

@flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
def fan() -> list:
    futures = [nap.submit(i) for i in range(FAN)]
    return [f.result() for f in futures]

chain(); fan()  # warm: the ephemeral API server starts on the first flow
out = {}
for name, fn in (("chain", chain), ("fan", fan)):
    start = time.perf_counter(); fn(); out[name] = time.perf_counter() - start
print(json.dumps(out))
"""


def cloche_pipelines():  # type: ignore[no-untyped-def]
    from cloche.pipelines import component, pipeline

    @component
    def add_one(n: int) -> int:
        return n + 1

    @component
    def nap(i: int) -> int:
        time.sleep(NAP)
        return i

    @pipeline(name="chain")
    def chain() -> None:
        value = add_one(n=0)
        for _ in range(CHAIN - 1):
            value = add_one(n=value.output)

    @pipeline(name="fan")
    def fan() -> None:
        for i in range(FAN):
            nap(i=i)

    return chain, fan


def plain() -> dict[str, float]:
    def add_one(n: int) -> int:
        return n + 1

    def nap(i: int) -> int:
        time.sleep(NAP)
        return i

    start = time.perf_counter()
    value = 0
    for _ in range(CHAIN):
        value = add_one(value)
    chain = time.perf_counter() - start
    start = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(nap, range(FAN)))
    return {"chain": chain, "fan": time.perf_counter() - start}


def cloche(executor: str, home: Path) -> dict[str, float]:
    from cloche.config import Settings
    from cloche.pipelines.runner import run_pipeline
    from cloche.store.store import Store

    chain, fan = cloche_pipelines()
    store = Store.open(Settings(home=home))
    try:
        timings = {}
        for name, pipe, workers in (("chain", chain, 1), ("fan", fan, 2)):
            start = time.perf_counter()
            run = run_pipeline(
                store, pipe, {}, actor="bench", use_cache=False, executor=executor, workers=workers
            )
            timings[name] = time.perf_counter() - start
            assert run.state == "succeeded", run.error
        return timings
    finally:
        store.close()


def start_ray() -> bool:
    """A local Ray for the timings, its workers started by one warm-up run; False without Ray."""
    try:
        import ray
    except ImportError:
        return False
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    except Exception as exc:  # its node may time out starting on a loaded machine
        print(f"Ray did not start ({exc}); its row is left out")
        return False
    with tempfile.TemporaryDirectory() as home:
        cloche("ray", Path(home))
    return True


def prefect(version: str) -> dict[str, float]:
    venv = PREFECT_VENVS / f"prefect-{version}"
    python = venv / "bin" / "python"
    if not python.exists():
        uv = _uv()
        subprocess.run([*uv, "venv", "-q", "-p", "3.11", str(venv)], check=True)
        spec = f"prefect=={version}"
        subprocess.run([*uv, "pip", "install", "-q", "-p", str(python), spec], check=True)
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "PREFECT_HOME": home, "PREFECT_LOGGING_LEVEL": "ERROR"}
        # Its ephemeral API server can take longer than its default 20 s to start when the
        # machine is loaded; that start is not timed.
        env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
        env.pop("PREFECT_API_URL", None)
        done = subprocess.run(
            [str(python), "-c", PREFECT_SCRIPT, str(CHAIN), str(FAN), str(NAP)],
            capture_output=True, text=True, env=env, timeout=900, check=True,
        )  # fmt: skip
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _uv() -> list[str]:
    """uv on PATH, else the copy `make` bootstraps into .cache/uv-bootstrap."""
    import shutil

    found = shutil.which("uv")
    local = Path(__file__).resolve().parents[1] / ".cache" / "uv-bootstrap" / "bin" / "uv"
    return [found] if found else [str(local)]


def best(measure: Callable[[], dict[str, float]], repeat: int) -> dict[str, float]:
    runs = [measure() for _ in range(repeat)]
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefect", action="store_true", help="also run the Prefect peer")
    parser.add_argument(
        "--prefect-version", default=PREFECT_VERSION, help="the Prefect release to compare with"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the median is shown")
    parser.add_argument(
        "--executors",
        default=",".join(EXECUTORS),
        help="comma-separated executors to time (default: all three)",
    )
    args = parser.parse_args()

    executors = [e for e in EXECUTORS if e in args.executors.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        results = {"plain loop": best(plain, args.repeat)}
        for executor in list(executors):
            # Ray is imported and started only now: a runner that has not imported it forks
            # faster, as does `cloche pipelines run` with another executor.
            if executor == "ray" and not start_ray():
                executors.remove(executor)
                continue
            home = Path(tmp) / executor
            results[f"cloche {executor}"] = best(
                lambda h=home, e=executor: cloche(e, h), args.repeat
            )
        if args.prefect:
            results["prefect"] = best(lambda: prefect(args.prefect_version), 1)
    base = results["plain loop"]
    print(f"{'':18} {'chain 200 (s)':>14} {'ms/step':>9} {'fan 20x0.1s, 2 workers (s)':>28}")
    for name, timing in results.items():
        per_step = (timing["chain"] - base["chain"]) / CHAIN * 1000
        print(f"{name:18} {timing['chain']:14.3f} {per_step:9.2f} {timing['fan']:28.3f}")
    if "prefect" in results:
        theirs = (results["prefect"]["chain"] - base["chain"]) / CHAIN
        for executor in executors:
            ours = (results[f"cloche {executor}"]["chain"] - base["chain"]) / CHAIN
            print(f"prefect / cloche {executor} per-step overhead: {theirs / ours:.1f}x")


if __name__ == "__main__":
    main()
