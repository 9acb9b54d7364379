"""Online serving throughput and latency: a bare baseline and cloche, side by side, in one run.

Both servers run on uvicorn with httptools and uvloop, pinned to CPU 0; wrk (installed from
Debian if missing) runs on CPU 1. For a LogisticRegression and a HistGradientBoostingClassifier
(max_iter=200) on 20 numeric features, with 1-row and 64-row requests at 1, 16 and 64
connections, it prints requests/s, p50 and p99 of each and the cloche/baseline ratio.

    .venv/bin/python bench/serving.py [--seconds 5] [--quick]
    .venv/bin/python bench/serving.py --models hgb --rows 1 --conns 1,64   # a subset
    .venv/bin/python bench/serving.py --monitor --seconds 20 --rows 1 --conns 1,64

``--monitor`` watches cloche's endpoint with a monitor that runs every minute, as in production:
the scheduler runs it in the worker, and log compaction (a niced child, every minute) profiles
the partitions it compacts. Run long enough (``--seconds 20`` with two configurations) that
both happen while wrk measures.

``--browser`` then measures cloche three more times on the same server: alone, while a
headless Chromium signed in to the console keeps the endpoint's page open with its charts
refreshing on the page's own 30 s timer (bench/_browser_watch.py), and alone again; it prints
requests/s with the browser over the mean of the two runs without it, and the server's CPU
time per 1,000 requests in each. Each such cell lasts at least 35 s, so a refresh lands in it. The
browser is pinned to CPU 1 with wrk (``taskset -c 1``; Chromium's processes inherit the pin):
what it costs the server is the console's own work, not a browser's rendering on its CPU.
``--browser --browser-blank`` is its control: the same browser signed in, then on a blank page,
so a drop in requests/s that the blank page shows too is the browser's cost to wrk on CPU 1.

Compare ratios from one run; absolute numbers move with the machine's other load.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
from _charts import Chart, add_replay_options, caption, command_line, replay_caption, write

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
N_FEATURES = 20
BROWSER_SECONDS = 35  # a cell with the browser open outlasts the charts' 30 s refresh
PHASES = ("without", "browser", "after")  # --browser: cloche alone, watched, alone again
Cell = dict[str, float]
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open("{body}", "rb"):read("*a")
"""


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("installing wrk from Debian's packages...", file=sys.stderr)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "install", "-y", "-q", "wrk"], check=True, env=env)
    return shutil.which("wrk") or sys.exit("wrk did not install")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train(kind: str, path: Path) -> None:
    import joblib
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(5000, N_FEATURES))
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int)
    model = (
        LogisticRegression() if kind == "logreg" else HistGradientBoostingClassifier(max_iter=200)
    )
    joblib.dump(model.fit(X, y), path)


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited early with {proc.returncode}")
        try:
            if (
                httpx.post(url, json={"instances": [[0.0] * N_FEATURES]}, timeout=2).status_code
                == 200
            ):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    sys.exit(f"server at {url} did not become ready")


def start_baseline(model: Path, port: int) -> subprocess.Popen[bytes]:
    cmd = [
        "taskset",
        "-c",
        "0",
        PY,
        "-m",
        "uvicorn",
        "baseline_app:app",
        "--port",
        str(port),
        "--http",
        "httptools",
        "--loop",
        "uvloop",
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    env = {**os.environ, "BASELINE_MODEL": str(model), "PYTHONPATH": str(REPO / "bench")}
    return subprocess.Popen(cmd, env=env)


def start_cloche(
    model: Path, home: Path, port: int, *, monitor: bool = False
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOCHE_")}
    env["CLOCHE_HOME"] = str(home)
    cloche = str(Path(PY).parent / "cloche")
    setup = [
        [cloche, "models", "upload", str(model), "--name", "m", "--json"],
        [cloche, "endpoints", "create", "m", "--json"],
        [cloche, "endpoints", "deploy", "m", "m:1", "--max-batch-size", "256", "--json"],
    ]
    if monitor:
        setup.append([cloche, "monitors", "create", "m", "--every", "1m", "--window", "1h"])
    for cmd in setup:
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    cmd = ["taskset", "-c", "0", cloche, "up", "--port", str(port), "--workers", "1"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)


def run_wrk(
    wrk: str, url: str, body: Path, conns: int, seconds: int, work: Path
) -> dict[str, float]:
    script = work / "post.lua"
    script.write_text(LUA.format(body=body))
    cmd = [
        "taskset",
        "-c",
        "1",
        wrk,
        "-t1",
        f"-c{conns}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        sys.exit(f"{url} answered {errors.group(1)} errors:\n{out}")
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": _ms(out, "50%"),
        "p99": _ms(out, "99%"),
    }


def _ms(out: str, pct: str) -> float:
    value, unit = re.search(rf"{pct}\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="64 connections, 1-row only")
    parser.add_argument("--models", default="logreg,hgb", help="comma-separated: logreg,hgb")
    parser.add_argument("--rows", default="1,64", help="rows per request, comma-separated")
    parser.add_argument("--conns", default="1,16,64", help="connections, comma-separated")
    parser.add_argument("--monitor", action="store_true", help="a monitor on cloche's endpoint")
    parser.add_argument(
        "--browser", action="store_true", help="again with the console's endpoint page open"
    )
    parser.add_argument(
        "--browser-blank",
        action="store_true",
        help="with --browser: the browser on a blank page instead (a control: the browser's own "
        "cost to the load generator on CPU 1)",
    )
    parser.add_argument("--no-chart", action="store_true", help="do not write docs/img/bench/")
    add_replay_options(parser)
    args = parser.parse_args()
    if args.chart_from:
        name = "serving-quick" if args.quick else ""
        write_chart(parse_ratios(args.chart_from.read_text()), replay_caption(args), name)
        return
    wrk = ensure_wrk()
    conns = [64] if args.quick else _ints(args.conns)
    rows_list = [1] if args.quick else _ints(args.rows)
    kinds = [k for k in args.models.split(",") if k]
    if not set(kinds) <= {"logreg", "hgb"}:
        parser.error("--models takes logreg and/or hgb")
    print(
        f"{'model':8} {'rows':>4} {'conns':>5} | {'baseline rps':>12} {'p50':>6} {'p99':>6} | "
        f"{'cloche rps':>10} {'p50':>6} {'p99':>6} | {'ratio':>5}"
    )
    ratios: dict[str, float] = {}
    watched: dict[str, list[int]] = {}
    with_browser: list[str] = []
    for kind in kinds:
        refreshes: list[int] = []
        with tempfile.TemporaryDirectory(prefix="cloche-bench-") as tmp:
            work = Path(tmp)
            model = work / f"{kind}.joblib"
            train(kind, model)
            bodies = {}
            rng = np.random.default_rng(1)
            for rows in rows_list:
                bodies[rows] = work / f"body-{rows}.json"
                instances = rng.normal(size=(rows, N_FEATURES)).round(6).tolist()
                bodies[rows].write_text('{"instances": ' + str(instances) + "}")
            results: dict[str, dict[tuple[int, int], dict[str, float]]] = {}
            for side in ("baseline", "cloche"):
                port = free_port()
                proc = (
                    start_baseline(model, port)
                    if side == "baseline"
                    else start_cloche(model, work / "home", port, monitor=args.monitor)
                )
                url = f"http://127.0.0.1:{port}/v1/models/m:predict"
                try:
                    wait_ready(url, proc)
                    run_wrk(wrk, url, bodies[rows_list[0]], 16, 1, work)  # warm up
                    results[side] = {
                        (r, c): run_wrk(wrk, url, bodies[r], c, args.seconds, work)
                        for r in rows_list
                        for c in conns
                    }
                    if side == "cloche" and args.browser:
                        seconds = max(args.seconds, BROWSER_SECONDS)

                        # Without, with, and without the browser again: the machine's other
                        # load drifts, and the two runs without it bracket the one with it.
                        again = (proc.pid, wrk, url, bodies, rows_list, conns, seconds, work)
                        results["without"] = cpu_cells(*again)
                        page = "-" if args.browser_blank else "m"
                        with watching(f"http://127.0.0.1:{port}", page, refreshes) as counted:
                            results["browser"] = cpu_cells(*again)
                        results["after"] = cpu_cells(*again)
                        watched[kind] = counted
                finally:
                    proc.terminate()
                    proc.wait(timeout=30)
            for r in rows_list:
                for c in conns:
                    b, x = results["baseline"][(r, c)], results["cloche"][(r, c)]
                    print(
                        f"{kind:8} {r:>4} {c:>5} | {_cells(b, 12)} | {_cells(x, 10)} | "
                        f"{x['rps'] / b['rps']:>5.2f}"
                    )
                    ratios[_label(kind, r, c)] = x["rps"] / b["rps"]
                    if args.browser:
                        with_browser.append(
                            browser_row(kind, r, c, b, *(results[k][(r, c)] for k in PHASES))
                        )
    if args.browser:
        if args.browser_blank:
            print("\n(the control: the browser signed in, then on a blank page)")
        print_browser_table(with_browser, watched, max(args.seconds, BROWSER_SECONDS))
    if not args.no_chart:
        note = f"{args.seconds} s per cell, one run"
        write_chart(ratios, caption(command_line(), note), "serving-quick" if args.quick else "")


@contextmanager
def watching(url: str, endpoint: str, refreshes: list[int]) -> Iterator[list[int]]:
    """A console user's browser on ``endpoint``'s page, pinned to CPU 1, while the block runs;
    ``refreshes`` gets how many chart refreshes it made."""
    cmd = ["taskset", "-c", "1", PY, str(REPO / "bench" / "_browser_watch.py"), url, endpoint]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        ready = proc.stdout.readline().split()
        if not ready or ready[0] != "ready":
            sys.exit("the browser did not open the endpoint's page (see its error above)")
        print(f"the browser opened the endpoint's page in {ready[1]} s", file=sys.stderr)
        yield refreshes
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        last = proc.stdout.readline().split()
        refreshes.append(int(last[1]) if len(last) == 2 else 0)
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)


def cpu_cells(
    pid: int,
    wrk: str,
    url: str,
    bodies: dict[int, Path],
    rows_list: list[int],
    conns: list[int],
    seconds: int,
    work: Path,
) -> dict[tuple[int, int], Cell]:
    """Every cell measured with ``with_cpu``."""
    return {
        (r, c): with_cpu(
            pid, lambda r=r, c=c: run_wrk(wrk, url, bodies[r], c, seconds, work), seconds
        )
        for r in rows_list
        for c in conns
    }


def with_cpu(pid: int, measure: Callable[[], dict[str, float]], seconds: int) -> Cell:
    """``measure``'s figures and the server's CPU time (all its processes) per 1,000 requests:
    work the console adds to the server shows there, whoever else loads the machine."""
    import psutil

    def cpu() -> float:
        server = psutil.Process(pid)
        times = [p.cpu_times() for p in (server, *server.children(recursive=True))]
        return sum(t.user + t.system for t in times)

    start = cpu()
    found = measure()
    used = cpu() - start
    return {**found, "cpu_ms_per_1k": used * 1000 / (found["rps"] * seconds / 1000)}


def browser_row(
    kind: str, rows: int, conns: int, base: Cell, without: Cell, browser: Cell, after: Cell
) -> str:
    alone = (without["rps"] + after["rps"]) / 2
    cpu_alone = (without["cpu_ms_per_1k"] + after["cpu_ms_per_1k"]) / 2
    return (
        f"{kind:8} {rows:>4} {conns:>5} | {without['rps']:>8.0f} {after['rps']:>8.0f} "
        f"{cpu_alone:>7.1f} | {_cells(browser, 8)} {browser['cpu_ms_per_1k']:>7.1f} | "
        f"{browser['rps'] / alone:>5.2f} {browser['rps'] / base['rps']:>6.2f}"
    )


def print_browser_table(lines: list[str], watched: dict[str, list[int]], seconds: int) -> None:
    counted = ", ".join(f"{kind}: {sum(n)}" for kind, n in watched.items())
    print(
        f"\ncloche with the console's endpoint page open in a browser pinned to CPU 1, between "
        f"two runs without it ({seconds} s each; chart refreshes answered: {counted}); "
        "cpu: the server's CPU ms per 1,000 requests\n"
        f"{'model':8} {'rows':>4} {'conns':>5} | {'alone rps':>8} {'again':>8} {'cpu':>7} | "
        f"{'browser':>8} {'p50':>6} {'p99':>6} {'cpu':>7} | {'b/a':>5} {'b/base':>6}"
    )
    for line in lines:
        print(line)


def _label(kind: str, rows: int, conns: int) -> str:
    return f"{kind}, {rows} row{'s' if rows > 1 else ''}, {conns} conn"


def parse_ratios(output: str) -> dict[str, float]:
    """The ratio column of this script's printed table, by row."""
    ratios = {}
    for line in output.splitlines():
        found = re.match(r"^(\w+)\s+(\d+)\s+(\d+)\s+\|.*\|\s+([\d.]+)\s*$", line)
        if found:
            kind, rows, conns, ratio = found.groups()
            ratios[_label(kind, int(rows), int(conns))] = float(ratio)
    return ratios


def write_chart(ratios: dict[str, float], note: str, name: str = "") -> None:
    """docs/img/bench/serving.svg: cloche's requests/s over the bare baseline's, per cell."""
    chart = Chart(
        title="Online serving: cloche requests/s ÷ a bare Starlette app's, same model",
        unit="ratio (higher is better; 1.0 = as fast as the bare app)",
        categories=list(ratios),
        series={"cloche / baseline": list(ratios.values())},
        caption=note,
        reference=1.0,
        reference_label="1.0",
        fmt=lambda v: f"{v:.2f}x",
    )
    write(chart, name or "serving")


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _cells(m: dict[str, float], width: int) -> str:
    return f"{m['rps']:>{width}.0f} {m['p50']:>6.2f} {m['p99']:>6.2f}"


if __name__ == "__main__":
    main()
