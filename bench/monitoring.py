"""Monitoring: one cloche monitor run beside the exact recomputation and Evidently, in one run.

Data (seeded): ROWS one-row predictions x 20 features (f0-f9 numeric, c0-c9 categorical with
4-40 categories) logged by cloche's own payload-log writer over HOURS hourly partitions and
compacted by cloche's compaction (the files `cloche up` writes), plus a baseline of
BASELINE_ROWS rows attached to the served version at upload. The second half of the hours
drifts on f1 (shifted by two std) and c3 (half its rows move to its rarest category).

The monitor's window is half the hours, so one run compares the last half with the baseline
(skew) and with the first half (drift): every logged row takes part.

- cloche: `run_monitor`, as the scheduler of `cloche up` calls it (a warm run: the baseline's
  profile is cached by an earlier run, as it is for every run but a monitor's first);
- exact: the same figures (JS divergence, log base 2, on the reference's decile bins; L-inf
  over category shares) recomputed with numpy/scipy from the raw rows of the log's Parquet
  files, reading and parsing included ("metrics only": the same with the columns in memory);
- evidently: its DataDriftPreset, current window vs baseline, when ``EVIDENTLY_PYTHON`` (default
  /tmp/evvenv/bin/python) can import it: it is not a dependency of cloche.

Each runs in its own child process; peak RSS is the child's RSS sampled every 5 ms with psutil
(``before`` is the RSS once its imports are done, so the step's own share is the difference).

    .venv/bin/python bench/monitoring.py [--rows 1000000] [--hours 8] [--baseline-rows 200000]

Goals (issue 5): a monitor run <= 1 s and <= 200 MB, >= 10x faster than the exact recomputation.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from _charts import Chart, caption, command_line, write
from _monitoring_data import (
    CATEGORICAL,
    END,
    FEATURES,
    NUMERIC,
    train_model,
    write_baseline,
    write_log,
)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
EVIDENTLY_PYTHON = os.environ.get("EVIDENTLY_PYTHON", "/tmp/evvenv/bin/python")


# --- measuring (in a child process) -----------------------------------------------------------


def measured(step: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``step`` while a thread samples this process's RSS every 5 ms."""
    me = psutil.Process()
    before = me.memory_info().rss
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            peak[0] = max(peak[0], me.memory_info().rss)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    started = time.perf_counter()
    extra = step()
    seconds = time.perf_counter() - started
    done.set()
    watcher.join()
    peak[0] = max(peak[0], me.memory_info().rss)
    return {"seconds": seconds, "peak_rss": peak[0], "before_rss": before, **extra}


def child_monitor(home: Path) -> dict[str, Any]:
    from cloche.config import Settings
    from cloche.monitoring.runs import run_monitor
    from cloche.store.store import Store

    store = Store.open(Settings(home=home))
    # The scheduler runs monitors in a long-lived server process: its imports are warm.
    run_monitor(store, "churn", now=END)

    def step() -> dict[str, Any]:
        run = run_monitor(store, "churn", now=END)
        features = run.results.get("features", {})
        values = {
            f"{check}:{name}": entry[check]["value"]
            for name, entry in features.items()
            for check in ("skew", "drift")
            if check in entry
        }
        return {"status": run.status, "breaches": run.breaches, "values": values, "rows": run.rows}

    return measured(step)


def _windows(hours: int) -> tuple[datetime, datetime, datetime]:
    half = timedelta(hours=hours // 2)
    return END - 2 * half, END - half, END


def read_raw_window(root: Path, start: datetime, end: datetime) -> dict[str, list[Any]]:
    """The window's answered live rows, one list per feature, from the log's Parquet files."""
    import orjson
    import pyarrow as pa
    import pyarrow.dataset as ds

    data = ds.dataset(str(root / "endpoint=churn"), format="parquet")
    t = pa.timestamp("ms", tz="UTC")
    found = data.to_table(
        columns=["inputs"],
        filter=(ds.field("time") >= pa.scalar(start, t))
        & (ds.field("time") < pa.scalar(end, t))
        & (ds.field("status") == 200)
        & ~ds.field("shadow"),
    )
    requests = orjson.loads("[" + ",".join(found["inputs"].to_pylist()) + "]")
    rows = [row for request in requests for row in request]
    return {name: list(col) for name, col in zip(FEATURES, zip(*rows, strict=True), strict=True)}


def exact_metrics(
    baseline: dict[str, list[Any]], previous: dict[str, list[Any]], current: dict[str, list[Any]]
) -> dict[str, float]:
    """Skew (current vs baseline) and drift (current vs previous), like the monitor's."""
    from scipy.spatial.distance import jensenshannon

    out = {}
    for check, reference in (("skew", baseline), ("drift", previous)):
        for name in NUMERIC:
            ref = np.asarray(reference[name], dtype=np.float64)
            now = np.asarray(current[name], dtype=np.float64)
            edges = np.unique(np.quantile(ref, np.arange(1, 10) / 10, method="inverted_cdf"))
            p = np.bincount(np.searchsorted(edges, ref, side="left"), minlength=len(edges) + 1)
            q = np.bincount(np.searchsorted(edges, now, side="left"), minlength=len(edges) + 1)
            out[f"{check}:{name}"] = float(jensenshannon(p / p.sum(), q / q.sum(), base=2) ** 2)
        for name in CATEGORICAL:
            p_counts, q_counts = Counter(reference[name]), Counter(current[name])
            p_n, q_n = sum(p_counts.values()), sum(q_counts.values())
            categories = p_counts.keys() | q_counts.keys()
            out[f"{check}:{name}"] = max(
                abs(p_counts[c] / p_n - q_counts[c] / q_n) for c in categories
            )
    return out


def child_exact(home: Path, baseline_path: Path, hours: int) -> dict[str, Any]:
    import pyarrow.parquet as pq
    import scipy.spatial.distance  # noqa: F401  (imported before the clock starts)

    from cloche.logs.service import log_root

    first, middle, end = _windows(hours)
    loaded: dict[str, Any] = {}

    def read() -> dict[str, Any]:
        base = pq.read_table(baseline_path)
        loaded["baseline"] = {n: base[n].to_pylist() for n in FEATURES}
        loaded["previous"] = read_raw_window(log_root(home), first, middle)
        loaded["current"] = read_raw_window(log_root(home), middle, end)
        return {}

    def compute() -> dict[str, Any]:
        return {"values": exact_metrics(loaded["baseline"], loaded["previous"], loaded["current"])}

    reading = measured(read)
    computing = measured(compute)
    return {
        "seconds": reading["seconds"] + computing["seconds"],
        "metrics_seconds": computing["seconds"],
        "peak_rss": max(reading["peak_rss"], computing["peak_rss"]),
        "before_rss": reading["before_rss"],
        "values": computing["values"],
    }


EVIDENTLY = """
import json, sys, time, threading, psutil, pandas as pd
me = psutil.Process(); before = me.memory_info().rss; peak = [before]; done = threading.Event()
def sample():
    while not done.wait(0.005):
        peak[0] = max(peak[0], me.memory_info().rss)
reference = pd.read_parquet(sys.argv[1]); current = pd.read_parquet(sys.argv[2])
from evidently import Report
from evidently.presets import DataDriftPreset
before = me.memory_info().rss; peak[0] = before
threading.Thread(target=sample, daemon=True).start()
started = time.perf_counter()
Report([DataDriftPreset()]).run(current, reference)
seconds = time.perf_counter() - started
done.set()
print(json.dumps({"seconds": seconds, "peak_rss": max(peak[0], me.memory_info().rss),
                  "before_rss": before}))
"""


def run_evidently(work: Path, home: Path, baseline: Path, hours: int) -> dict[str, Any] | None:
    if not Path(EVIDENTLY_PYTHON).exists():
        return None
    probe = subprocess.run([EVIDENTLY_PYTHON, "-c", "import evidently"], capture_output=True)
    if probe.returncode != 0:
        return None
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cloche.logs.service import log_root

    _, middle, end = _windows(hours)
    current = work / "current.parquet"
    pq.write_table(pa.table(read_raw_window(log_root(home), middle, end)), current)
    done = subprocess.run(
        [EVIDENTLY_PYTHON, "-c", EVIDENTLY, str(baseline), str(current)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def in_child(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- the run ----------------------------------------------------------------------------------


def prepare(work: Path, args: argparse.Namespace) -> dict[str, float]:
    from cloche.auth.roles import LOCAL_USER
    from cloche.config import Settings
    from cloche.endpoints import service as endpoints
    from cloche.logs.compact import main as compact_main
    from cloche.logs.service import log_root
    from cloche.monitoring import service as monitors
    from cloche.monitoring.entities import MonitorConfig
    from cloche.monitoring.runs import run_monitor
    from cloche.registry.inspection import inspect_here
    from cloche.registry.upload import upload_model
    from cloche.store.store import Store

    home = work / "home"
    baseline = work / "baseline.parquet"
    write_baseline(baseline, np.random.default_rng(args.seed), args.baseline_rows)
    train_model(work / "model.joblib", baseline)
    store = Store.open(Settings(home=home))
    upload_model(
        store,
        source=work / "model.joblib",
        name="churn",
        baseline=baseline,
        principal=LOCAL_USER,
        inspector=inspect_here,
    )
    endpoints.create_endpoint(store, name="churn")
    endpoints.deploy(store, endpoint="churn", ref="churn:1")
    config = MonitorConfig(window_s=args.hours // 2 * 3600, every_s=3600)
    monitors.create_monitor(store, endpoint="churn", config=config)
    times = {}
    started = time.perf_counter()
    write_log(log_root(home), args.rows, args.hours, args.seed + 1)
    times["write_log"] = time.perf_counter() - started
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the rows it moved
        compact_main([str(log_root(home))])  # what `cloche up` runs in its niced child
    times["compaction"] = time.perf_counter() - started
    started = time.perf_counter()
    run_monitor(store, "churn", now=END)  # the monitor's first run profiles its baseline
    times["first_run"] = time.perf_counter() - started
    store.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--hours", type=int, default=8, help="hourly partitions (even)")
    parser.add_argument("--baseline-rows", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-evidently", action="store_true")
    parser.add_argument("--no-chart", action="store_true", help="do not write docs/img/bench/")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        step, *rest = args.child
        if step == "monitor":
            result = child_monitor(Path(rest[0]))
        else:
            result = child_exact(Path(rest[0]), Path(rest[1]), int(rest[2]))
        print(json.dumps(result))
        return
    if args.hours < 2 or args.hours % 2:
        parser.error("--hours must be even and at least 2")

    with tempfile.TemporaryDirectory(prefix="cloche-bench-monitoring-") as tmp:
        work = Path(tmp)
        print(
            f"{args.rows:,} rows x {len(FEATURES)} features over {args.hours} hourly partitions,"
            f" baseline {args.baseline_rows:,} rows",
            flush=True,
        )
        setup = prepare(work, args)
        print("setup: " + ", ".join(f"{k} {v:.1f} s" for k, v in setup.items()), flush=True)
        home = str(work / "home")
        cloche = in_child("monitor", home)
        exact = in_child("exact", home, str(work / "baseline.parquet"), str(args.hours))
        evidently = None
        if not args.no_evidently:
            evidently = run_evidently(work, work / "home", work / "baseline.parquet", args.hours)
        report(args, cloche, exact, evidently)
    if not args.no_chart:
        seconds = {"cloche monitor run": cloche["seconds"], "exact (numpy/scipy)": exact["seconds"]}
        if evidently is not None:
            seconds["evidently preset"] = evidently["seconds"]
        note = f"{args.rows:,} rows over {args.hours} hourly partitions, one run"
        write_chart(seconds, caption(command_line(), note))


def write_chart(seconds: dict[str, float], note: str) -> None:
    """docs/img/bench/monitoring.svg: seconds of one monitor run beside the exact figures."""
    chart = Chart(
        title="Monitoring: one monitor run (skew, drift, quality) beside exact computation",
        unit="seconds (lower is better)",
        categories=list(seconds),
        series={"seconds": list(seconds.values())},
        caption=note,
        fmt=lambda v: f"{v:,.2f} s",
    )
    write(chart, "monitoring")


def _mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB"


def report(
    args: argparse.Namespace,
    cloche: dict[str, Any],
    exact: dict[str, Any],
    evidently: dict[str, Any] | None,
) -> None:
    print(
        f"\nmonitor run: {cloche['status']}, {cloche['rows']:,} rows in the current window, "
        f"breaches {sorted(cloche['breaches'])}"
    )
    found = cloche["values"]
    diffs = [abs(found[k] - v) for k, v in exact["values"].items() if k in found]
    print(f"largest |cloche - exact| over {len(diffs)} skew/drift values: {max(diffs):.4f}")
    rows: list[tuple[str, dict[str, Any] | None]] = [
        ("cloche monitor run", cloche),
        ("exact (numpy/scipy)", exact),
        ("evidently preset", evidently),
    ]
    print(f"\n{'':22} {'seconds':>9} {'peak RSS':>10} {'RSS before':>11} {'x cloche time':>14}")
    for name, found in rows:
        if found is None:
            print(f"{name:22} {'not installed':>9}")
            continue
        ratio = found["seconds"] / cloche["seconds"]
        print(
            f"{name:22} {found['seconds']:9.2f} {_mb(found['peak_rss']):>10} "
            f"{_mb(found['before_rss']):>11} {ratio:13.1f}x"
        )
    print(f"{'  exact, metrics only':22} {exact['metrics_seconds']:9.2f}")
    ok_time = cloche["seconds"] <= 1.0
    ok_rss = cloche["peak_rss"] <= 200 * 2**20
    ok_ratio = exact["seconds"] / cloche["seconds"] >= 10
    verdict = {True: "met", False: "NOT met"}
    print(
        f"\ngoals: run <= 1 s {verdict[ok_time]}; <= 200 MB {verdict[ok_rss]}; "
        f">= 10x faster than exact {verdict[ok_ratio]}"
    )


if __name__ == "__main__":
    main()
