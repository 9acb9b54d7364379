"""Serving CPU per request: this tree's `cloche up` against another revision's, and the bare app.

Requests/s on a shared machine move with everyone else's load (the bare app's own figure moved
45% between rounds of bench/serving.py in one sitting). The CPU time the server's process spends
per request answered moves far less: it is the work the hot path does, whoever else runs. So a
change to the hot path is judged here by CPU per request, alternating the revisions round by
round, beside the bare app of bench/serving.py doing the same work.

    .venv/bin/python bench/serving_cpu.py --against 0179c70            # logreg, 64 conns
    .venv/bin/python bench/serving_cpu.py --against main~3 --models logreg,hgb --rounds 5

The other revision's `cloche` package comes from `git archive REV cloche` on PYTHONPATH (its
dependencies are this venv's). Each server is pinned to CPU 0 and wrk to CPU 1, as in
bench/serving.py; CPU is psutil's user + system time of the serving process (one worker, so the
process that answers) over wrk's run, divided by the requests wrk counted. Batching makes CPU
per request depend on the request rate a little (a batch of 40 shares its model call), so
compare rounds whose requests/s are alike; both are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import psutil
from serving import (
    N_FEATURES,
    REPO,
    ensure_wrk,
    free_port,
    run_wrk,
    start_baseline,
    start_cloche,
    train,
    wait_ready,
)


def export_revision(rev: str, into: Path) -> Path:
    """The ``cloche`` package of ``rev``, extracted under ``into``; the folder for PYTHONPATH."""
    into.mkdir(parents=True, exist_ok=True)
    archive = into / "cloche.tar"
    with archive.open("wb") as out:
        subprocess.run(["git", "-C", str(REPO), "archive", rev, "cloche"], stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into


def cpu_per_request(
    start: Callable[[int], subprocess.Popen[bytes]],
    body: Path,
    conns: int,
    seconds: int,
    work: Path,
) -> tuple[float, float]:
    """(µs of the server's CPU per request, requests/s) under wrk at ``conns`` connections."""
    wrk = ensure_wrk()
    port = free_port()
    proc = start(port)
    url = f"http://127.0.0.1:{port}/v1/models/m:predict"
    try:
        wait_ready(url, proc)
        run_wrk(wrk, url, body, 16, 1, work)  # warm up
        server = psutil.Process(proc.pid)
        before = server.cpu_times()
        measured = run_wrk(wrk, url, body, conns, seconds, work)
        after = server.cpu_times()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    cpu = (after.user - before.user) + (after.system - before.system)
    return cpu / (measured["rps"] * seconds) * 1e6, measured["rps"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="the git revision to compare with")
    parser.add_argument("--models", default="logreg", help="comma-separated: logreg,hgb")
    parser.add_argument("--conns", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cloche-cpu-") as tmp:
        work = Path(tmp)
        other = export_revision(args.against, work / "other")
        body = work / "body.json"
        body.write_text('{"instances": [' + str([0.5] * N_FEATURES) + "]}")
        print(f"µs of server CPU per request (requests/s), {args.conns} connections, 1-row")
        print(
            f"{'model':8} {'round':>5} | {'bare app':>16} | {args.against:>16} | {'this tree':>16}"
        )
        for kind in [k for k in args.models.split(",") if k]:
            model = work / f"{kind}.joblib"
            train(kind, model)
            sides: dict[str, Callable[[int], subprocess.Popen[bytes]]] = {
                "bare": lambda port, m=model: start_baseline(m, port),
                "other": lambda port, m=model: _with_path(other, start_cloche, m, work, port),
                "this": lambda port, m=model: _with_path(None, start_cloche, m, work, port),
            }
            figures: dict[str, list[float]] = {side: [] for side in sides}
            for round_ in range(args.rounds):
                cells = []
                for side, start in sides.items():
                    us, rps = cpu_per_request(start, body, args.conns, args.seconds, work)
                    figures[side].append(us)
                    cells.append(f"{us:7.1f} ({rps:6.0f})")
                print(f"{kind:8} {round_ + 1:>5} | " + " | ".join(cells), flush=True)
            medians = {side: statistics.median(values) for side, values in figures.items()}
            print(
                f"{kind:8} {'median':>5} | {medians['bare']:16.1f} | {medians['other']:16.1f} | "
                f"{medians['this']:16.1f}   this/{args.against}: "
                f"{medians['this'] / medians['other']:.3f}"
            )


def _with_path(
    path: Path | None,
    start: Callable[..., subprocess.Popen[bytes]],
    model: Path,
    work: Path,
    port: int,
) -> subprocess.Popen[bytes]:
    """Start cloche in a new home, with ``path`` (another revision's package) on PYTHONPATH."""
    home = Path(tempfile.mkdtemp(dir=work, prefix="home-"))
    saved = os.environ.get("PYTHONPATH")
    if path is not None:
        os.environ["PYTHONPATH"] = str(path)
    try:
        return start(model, home, port)
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


if __name__ == "__main__":
    sys.exit(main())
