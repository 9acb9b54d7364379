"""Time to value: from a fresh clone to the first prediction, cloche beside MLflow, in one run.

cloche: `git clone` this repository into a temporary folder and run `make demo`, which creates
.venv, installs the base, trains, registers two versions and predicts through the registry;
the clock stops at the demo's "first prediction" line.
Peer: MLflow's registry doing the same work: a new venv, `uv pip install mlflow scikit-learn
pandas pyarrow`, then train, log and register the model, load it back by alias and predict.

    .venv/bin/python bench/time_to_value.py [--cold]

--cold gives each side an empty uv cache (downloads from the package index); by default both
share the machine's warm cache. Compare the ratio, not absolute seconds across runs.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from _charts import Chart, add_replay_options, caption, command_line, replay_caption, write

REPO = Path(__file__).resolve().parent.parent
MARKER = "first prediction"

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


def _run_until_marker(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    seen_at = None
    tail: list[str] = []
    for line in proc.stdout:
        tail = ([*tail, line])[-20:]
        if seen_at is None and MARKER in line.lower():
            seen_at = time.perf_counter() - start
    if proc.wait() != 0 or seen_at is None:
        sys.exit(f"{' '.join(cmd)} failed:\n{''.join(tail)}")
    return seen_at


def time_cloche(work: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(["git", "clone", "-q", str(REPO), str(work / "cloche")], check=True)
    clone = time.perf_counter() - start
    return clone + _run_until_marker(["make", "demo"], work / "cloche", env)


def time_mlflow(work: Path, env: dict[str, str]) -> float:
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
    return installed + _run_until_marker([py, "run.py"], peer, env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="empty uv caches for both sides")
    parser.add_argument("--no-chart", action="store_true", help="do not write docs/img/bench/")
    add_replay_options(parser)
    args = parser.parse_args()
    if args.chart_from:
        write_chart(parse_results(args.chart_from.read_text()), replay_caption(args))
        return
    with tempfile.TemporaryDirectory(prefix="cloche-ttv-") as tmp:
        work = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOCHE_", "VIRTUAL_ENV"))}
        results = {}
        for name, fn in (("cloche", time_cloche), ("mlflow", time_mlflow)):
            side_env = dict(env)
            if args.cold:
                side_env["UV_CACHE_DIR"] = str(work / f"uv-cache-{name}")
            results[name] = fn(work, side_env)
    cache = "cold" if args.cold else "warm"
    print(f"\ntime to first prediction from a fresh start ({cache} uv cache)")
    print(f"  {'cloche (clone + make demo)':40s} {results['cloche']:7.1f} s")
    print(f"  {'MLflow (venv + install + register)':40s} {results['mlflow']:7.1f} s")
    print(f"  {'ratio cloche / MLflow':40s} {results['cloche'] / results['mlflow']:7.2f}")
    if not args.no_chart:
        write_chart(results, caption(command_line(), f"{cache} uv cache, one run"))


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
