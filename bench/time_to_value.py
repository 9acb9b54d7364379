"""Time to value: from a fresh clone to the first prediction, cloche beside MLflow, in one run.

cloche: `git clone` this repository into a temporary folder and run `make demo`, which creates
.venv, installs the base, trains, registers two versions and predicts through the registry;
the clock stops at the demo's "first prediction" line.
Peer: MLflow's registry doing the same work: a new venv, `uv pip install mlflow scikit-learn
pandas pyarrow`, then train, log and register the model, load it back by alias and predict.

    .venv/bin/python bench/time_to_value.py [--cold] [--no-peer] [--ref REV]

--cold gives each side empty package caches (uv's, pip's and the uv that `make` bootstraps:
downloads from the package index); by default both share the machine's warm caches. Compare the
ratio, not absolute seconds across runs. --no-peer times cloche alone; --ref REV clones that
revision (say `main`, to compare a branch with it in one sitting). cloche's line is followed by
where its time went (each `make` step and the demo's own start, from the lines they print) and by
the CPU seconds its processes had used at the first prediction, which a busy machine moves less
than it moves the wall clock.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil
from _charts import Chart, add_replay_options, caption, command_line, replay_caption, write

REPO = Path(__file__).resolve().parent.parent
MARKER = "first prediction"
# Where cloche's time goes: each phase starts at the first line matching its pattern (`make`
# echoes each command before running it; the demo prints its steps).
PHASES = [
    ("bootstrap uv", re.compile(r"bootstrapping uv|uv-bootstrap")),
    ("create .venv", re.compile(r"uv venv ")),
    ("install the lock", re.compile(r"--require-hashes -r requirements/")),
    ("install cloche (editable)", re.compile(r"--no-deps .*-e \.")),
    ("demo: imports, registry", re.compile(r"examples/demo\.py")),
    ("demo: train, register, predict", re.compile(r"^1\. ")),
]


@dataclasses.dataclass
class Timed:
    """Seconds to the marker, CPU seconds used by then, and each phase's seconds."""

    seconds: float
    cpu: float = 0.0
    phases: dict[str, float] = dataclasses.field(default_factory=dict)


PEER_SCRIPT = textwrap.dedent(
    f"""
    import numpy as np, pandas as pd, mlflow
    from mlflow import MlflowClient
    from sklearn.linear_model import LogisticRegression
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(500, 4)), columns=["a", "b", "c", "d"])
    y = (X["a"] > 0).astype(int)
    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    with mlflow.start_run():
        mlflow.sklearn.log_model(LogisticRegression().fit(X, y), name="m",
                                 registered_model_name="churn", input_example=X.head())
    MlflowClient().set_registered_model_alias("churn", "prod", 1)
    model = mlflow.pyfunc.load_model("models:/churn@prod")
    print("{MARKER}:", model.predict(X.head(3)))
    """
)


def _uv() -> str:
    found = shutil.which("uv") or str(REPO / ".cache/uv-bootstrap/bin/uv")
    if not Path(found).exists():  # bootstrap it the way `make` does
        subprocess.run(["make", "-C", str(REPO), ".cache/uv-bootstrap/bin/uv"], check=True)
    return found


def _cpu_seconds(pid: int) -> float:
    """User + system seconds of a process and everything under it, finished children included
    (those its processes have waited for)."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def _run_until_marker(cmd: list[str], cwd: Path, env: dict[str, str]) -> Timed:
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    timed: Timed | None = None
    starts: dict[str, float] = {}
    tail: list[str] = []
    for line in proc.stdout:
        now = time.perf_counter() - start
        tail = ([*tail, line])[-20:]
        for name, pattern in PHASES:
            if name not in starts and pattern.search(line.strip()):
                starts[name] = now
        if timed is None and MARKER in line.lower():
            timed = Timed(now, _cpu_seconds(proc.pid), _phase_seconds(starts, now))
    if proc.wait() != 0 or timed is None:
        sys.exit(f"{' '.join(cmd)} failed:\n{''.join(tail)}")
    return timed


def _phase_seconds(starts: dict[str, float], end: float) -> dict[str, float]:
    """Each seen phase's seconds: from its start to the next seen phase's (or to ``end``)."""
    if not starts:  # the peer prints none of cloche's phases
        return {}
    ordered = sorted(starts.items(), key=lambda item: item[1])
    ends = [at for _, at in ordered[1:]] + [end]
    phases = {"before the first phase": ordered[0][1]}
    return phases | {name: stop - at for (name, at), stop in zip(ordered, ends, strict=True)}


def time_cloche(work: Path, env: dict[str, str], ref: str | None = None) -> Timed:
    start = time.perf_counter()
    clone = work / "cloche"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    if ref:
        subprocess.run(["git", "-C", str(clone), "checkout", "-q", ref], check=True)
    cloned = time.perf_counter() - start
    timed = _run_until_marker(["make", "demo"], clone, env)
    return Timed(cloned + timed.seconds, timed.cpu, {"git clone": cloned} | timed.phases)


def time_mlflow(work: Path, env: dict[str, str]) -> Timed:
    peer = work / "mlflow"
    peer.mkdir()
    (peer / "run.py").write_text(PEER_SCRIPT)
    start = time.perf_counter()
    uv = _uv()
    subprocess.run([uv, "venv", "-q", "-p", "python3", str(peer / ".venv")], check=True, env=env)
    py = str(peer / ".venv/bin/python")
    pkgs = ["mlflow", "scikit-learn", "pandas", "pyarrow"]
    subprocess.run([uv, "pip", "install", "-q", "-p", py, *pkgs], check=True, env=env)
    installed = time.perf_counter() - start
    timed = _run_until_marker([py, "run.py"], peer, env)
    return Timed(installed + timed.seconds, timed.cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="empty package caches for both sides")
    parser.add_argument("--no-peer", action="store_true", help="time cloche alone, not MLflow")
    parser.add_argument("--ref", help="the revision of this repository to clone (default HEAD)")
    parser.add_argument("--no-chart", action="store_true", help="do not write docs/img/bench/")
    add_replay_options(parser)
    args = parser.parse_args()
    if args.chart_from:
        write_chart(parse_results(args.chart_from.read_text()), replay_caption(args))
        return
    with tempfile.TemporaryDirectory(prefix="cloche-ttv-") as tmp:
        work = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOCHE_", "VIRTUAL_ENV"))}
        cloche = time_cloche(work, _side_env(env, work / "cold-cloche", args.cold), args.ref)
        peer = (
            None
            if args.no_peer
            else time_mlflow(work, _side_env(env, work / "cold-mlflow", args.cold))
        )
    cache = "cold" if args.cold else "warm"
    print(f"\ntime to first prediction from a fresh start ({cache} uv cache)")
    print(f"  {'cloche (clone + make demo)':40s} {cloche.seconds:7.1f} s")
    for name, seconds in cloche.phases.items():
        print(f"  {'  ' + name:40s} {seconds:7.1f} s")
    print(f"  {'  CPU seconds used by then':40s} {cloche.cpu:7.1f} s")
    if peer is None:
        return
    print(f"  {'MLflow (venv + install + register)':40s} {peer.seconds:7.1f} s")
    print(f"  {'ratio cloche / MLflow':40s} {cloche.seconds / peer.seconds:7.2f}")
    if not args.no_chart:
        results = {"cloche": cloche.seconds, "mlflow": peer.seconds}
        write_chart(results, caption(command_line(), f"{cache} uv cache, one run"))


def _side_env(env: dict[str, str], cold: Path, empty: bool) -> dict[str, str]:
    """The environment for one side; with ``empty``, caches of its own that start empty: uv's,
    and XDG_CACHE_HOME for pip's and the uv that `make` bootstraps."""
    if not empty:
        return dict(env)
    return env | {"UV_CACHE_DIR": str(cold / "uv"), "XDG_CACHE_HOME": str(cold / "xdg")}


def parse_results(output: str) -> dict[str, float]:
    """{"cloche": s, "mlflow": s} from this script's printed lines."""
    results = {}
    for line in output.splitlines():
        found = re.match(r"^\s+(cloche|MLflow) \(.*?\)\s+([\d.]+) s", line)
        if found:
            results[found[1].lower()] = float(found[2])
    return results


def write_chart(results: dict[str, float], note: str) -> None:
    """docs/img/bench/time-to-value.svg: seconds from a fresh start to a first prediction."""
    chart = Chart(
        title="Time to a first prediction from a fresh start",
        unit="seconds (lower is better)",
        categories=["cloche (clone + make demo)", "MLflow (venv + install + register)"],
        series={"seconds": [results["cloche"], results["mlflow"]]},
        caption=note,
        fmt=lambda v: f"{v:,.1f} s",
    )
    write(chart, "time-to-value")


if __name__ == "__main__":
    main()
