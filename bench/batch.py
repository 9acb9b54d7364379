"""Batch scoring: `cloche batch run` beside the ideal single pass, in one run.

Data: N rows x 20 float features in Parquet (row groups of 100,000), scored by a
HistGradientBoostingClassifier (max_iter=200) trained on 20,000 rows.

- ideal: one process reads every row, calls predict_proba once, writes the output once;
- cloche: `cloche batch run` (streaming, checkpointed chunks, worker processes), then the same
  with the input doubled, to show that memory does not grow with input size.

Peak memory is the peak of the summed RSS of the process and all its children, sampled every
20 ms (RSS counts shared library pages once per process, so this over-counts cloche's workers;
PSS, which shares them out, is printed beside it).

    .venv/bin/python bench/batch.py [--rows 5000000] [--workers 0] [--no-double]

Goals (issue 4): cloche rows/s >= 0.9 x the ideal's; cloche peak RSS <= 0.25 x the ideal's and
within +-15% when the input doubles. Compare ratios from one run, not times across runs.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
from _charts import Chart, add_replay_options, caption, command_line, replay_caption, write

REPO = Path(__file__).resolve().parent.parent
FEATURES = [f"f{i}" for i in range(20)]
ROW_GROUP = 100_000

IDEAL = textwrap.dedent(
    """
    import sys, joblib, numpy as np, pyarrow as pa, pyarrow.parquet as pq
    model = joblib.load(sys.argv[1])
    table = pq.read_table(sys.argv[2])
    X = np.column_stack([table.column(c).to_numpy() for c in table.column_names])
    del table
    proba = model.predict_proba(X)
    out = {"row": np.arange(len(X)), "prediction": model.classes_[proba.argmax(axis=1)]}
    out |= {f"probability_{c}": proba[:, i] for i, c in enumerate(model.classes_)}
    pq.write_table(pa.table(out), sys.argv[3])
    """
)


@dataclass
class Result:
    name: str
    rows: int
    seconds: float
    peak_rss: int
    peak_pss: int

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds


def make_data(folder: Path, rows: int, seed: int) -> Path:
    """One Parquet file of ``rows`` rows, written a row group at a time."""
    path = folder / f"data-{rows}.parquet"
    rng = np.random.default_rng(seed)
    schema = pa.schema([(name, pa.float64()) for name in FEATURES])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, ROW_GROUP):
            n = min(ROW_GROUP, rows - start)
            block = rng.normal(size=(n, len(FEATURES)))
            writer.write_table(pa.table(dict(zip(FEATURES, block.T, strict=True)), schema=schema))
    return path


def train(folder: Path) -> Path:
    import joblib
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.normal(size=(20_000, len(FEATURES))), columns=FEATURES)
    y = (X["f0"] + X["f1"] * X["f2"] - X["f3"] > 0).astype(int)
    model = HistGradientBoostingClassifier(max_iter=200, random_state=0).fit(X, y)
    path = folder / "hgb.joblib"
    joblib.dump(model, path)
    return path


def _tree_memory(proc: psutil.Process) -> tuple[int, int]:
    rss = pss = 0
    try:
        tree = [proc, *proc.children(recursive=True)]
    except psutil.Error:  # the process ended between two samples
        return 0, 0
    for p in tree:
        try:
            info = p.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
    return rss, pss


def measure(name: str, rows: int, cmd: list[str], env: dict[str, str]) -> Result:
    """Run ``cmd`` to its end, sampling the memory of its whole process tree."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watched = psutil.Process(proc.pid)
    peaks = [0, 0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            rss, pss = _tree_memory(watched)
            peaks[0], peaks[1] = max(peaks[0], rss), max(peaks[1], pss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = proc.communicate()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    if proc.returncode != 0:
        sys.exit(f"{name} failed ({proc.returncode}):\n{stderr.decode()[-3000:]}")
    return Result(name, rows, seconds, peaks[0], peaks[1])


def cloche_run(work: Path, env: dict[str, str], data: Path, workers: int, tag: str) -> list[str]:
    return [
        str(REPO / ".venv/bin/cloche"),
        "batch",
        "run",
        "hgb:1",
        "--input",
        str(data),
        "--output",
        str(work / f"out-{tag}"),
        "--workers",
        str(workers),
        "--json",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--workers", type=int, default=0, help="cloche workers; 0: one per core")
    parser.add_argument("--no-double", action="store_true", help="skip the doubled input")
    parser.add_argument("--no-chart", action="store_true", help="do not write docs/img/bench/")
    add_replay_options(parser)
    args = parser.parse_args()
    if args.chart_from:
        write_charts(parse_results(args.chart_from.read_text()), replay_caption(args))
        return

    with tempfile.TemporaryDirectory(prefix="cloche-bench-batch-") as tmp:
        work = Path(tmp)
        env = os.environ | {"CLOCHE_HOME": str(work / "home")}
        env.pop("CLOCHE_URL", None)
        print(f"writing {args.rows:,} rows x {len(FEATURES)} features ...", flush=True)
        data = make_data(work, args.rows, seed=2)
        model = train(work)
        subprocess.run(
            [str(REPO / ".venv/bin/cloche"), "models", "upload", str(model), "--name", "hgb"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        python = str(REPO / ".venv/bin/python")
        results = [
            measure(
                "ideal",
                args.rows,
                [python, "-c", IDEAL, str(model), str(data), str(work / "ideal.parquet")],
                env,
            ),
            measure("cloche", args.rows, cloche_run(work, env, data, args.workers, "1x"), env),
        ]
        if not args.no_double:
            data.unlink()
            doubled = make_data(work, 2 * args.rows, seed=3)
            results.append(
                measure(
                    "cloche 2x input",
                    2 * args.rows,
                    cloche_run(work, env, doubled, args.workers, "2x"),
                    env,
                )
            )
        report(results)
    if not args.no_chart:
        write_charts(results, caption(command_line(), "one run"))


def parse_results(output: str) -> list[Result]:
    """The rows of this script's printed table."""
    results = []
    pattern = r"^(\S.*?)\s+([\d,]+)\s+[\d.]+\s+([\d,]+)\s+(\d+)MB\s+(\d+)MB"
    for line in output.splitlines():
        found = re.match(pattern, line)
        if found:
            name, rows_text, speed, rss, pss = found.groups()
            rows = int(rows_text.replace(",", ""))
            # Seconds from the printed rows/s, which is less rounded than the printed seconds.
            seconds = rows / int(speed.replace(",", ""))
            results.append(Result(name, rows, seconds, int(rss) << 20, int(pss) << 20))
    return results


def write_charts(results: list[Result], note: str) -> None:
    """docs/img/bench/batch-speed.svg and batch-memory.svg, one bar per row of the table."""
    names = [f"{r.name} ({r.rows:,} rows)" for r in results]
    speed = Chart(
        title="Batch scoring speed: cloche batch run beside one ideal process",
        unit="rows per second (higher is better)",
        categories=names,
        series={"rows/s": [r.rows_per_s for r in results]},
        caption=note,
        fmt=lambda v: f"{v:,.0f}",
    )
    memory = Chart(
        title="Batch scoring memory: peak of each process tree",
        unit="MiB (lower is better)",
        categories=names,
        series={
            "peak RSS": [r.peak_rss / 2**20 for r in results],
            "peak PSS": [r.peak_pss / 2**20 for r in results],
        },
        caption=note,
        fmt=lambda v: f"{v:,.0f}",
    )
    write(speed, "batch-speed")
    write(memory, "batch-memory")


def report(results: list[Result]) -> None:
    ideal, cloche = results[0], results[1]
    print(f"\n{'':16} {'rows':>12} {'seconds':>9} {'rows/s':>12} {'peak RSS':>10} {'peak PSS':>10}")
    for r in results:
        print(
            f"{r.name:16} {r.rows:>12,} {r.seconds:>9.1f} {r.rows_per_s:>12,.0f} "
            f"{r.peak_rss / 2**20:>8.0f}MB {r.peak_pss / 2**20:>8.0f}MB"
        )
    speed = cloche.rows_per_s / ideal.rows_per_s
    memory = cloche.peak_rss / ideal.peak_rss
    print(f"\ncloche/ideal rows/s:   {speed:.2f}  (goal >= 0.90)")
    print(
        f"cloche/ideal peak RSS: {memory:.2f}  (goal <= 0.25; PSS ratio "
        f"{cloche.peak_pss / ideal.peak_pss:.2f})"
    )
    if len(results) > 2:
        growth = results[2].peak_rss / cloche.peak_rss - 1
        print(f"cloche peak RSS, 2x input vs 1x: {growth:+.0%}  (goal within +-15%)")


if __name__ == "__main__":
    main()
