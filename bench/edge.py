"""Edge bundles: install size, cold start and predict time, ONNX beside native, in one run.

The model is the demo's kind: a HistGradientBoostingClassifier on 20 numeric features (also
``--model lr`` for a LogisticRegression), registered in a throwaway CLOCHE_HOME and exported
twice with `cloche export --with-wheels`: converted to ONNX, and ``--native``.

- install size: each bundle installed the way its README says (a fresh venv, pip --no-index
  --no-deps from its wheels); the size of the venv's site-packages, pip and setuptools left out.
  "onnx" is the default export, whose onnxruntime wheel is rewritten without the C API library
  Python never loads (export/slim.py); "onnx-whole" is the same with --no-slim;
- cold start: `cloche serve DIR` launched from that venv until its first answered prediction
  (median of ``--starts`` starts);
- predict time: onnxruntime through cloche's ONNX runtime against the original framework, on
  one row and on 1,000 rows (median of many calls), in this process.

    .venv/bin/python bench/edge.py [--model hgb|lr] [--starts 5]

Goals (issue 6): ONNX bundle cold start <= 1.5 s; its installed runtime <= 40% of the native's.
Compare figures from one run; the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
from _charts import Chart, add_replay_options, caption, command_line, replay_caption, write

NOT_RUNTIME = ("pip", "setuptools", "_distutils_hack", "pkg_resources", "__pycache__")


def train(kind: str, folder: Path) -> tuple[Path, np.ndarray]:
    import joblib
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(20_000, 20))
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(20)])
    model = (
        HistGradientBoostingClassifier(max_iter=100)
        if kind == "hgb"
        else LogisticRegression(max_iter=500)
    ).fit(frame, y)
    path = folder / "model.joblib"
    joblib.dump(model, path)
    return path, X[:1000]


def export(home: Path, model: Path, native: bool, slim: bool = True) -> Path:
    from cloche.auth.roles import LOCAL_USER
    from cloche.config import Settings
    from cloche.export.service import export_model
    from cloche.registry.inspection import inspect_here
    from cloche.registry.upload import upload_model
    from cloche.store.store import Store

    store = Store.open(Settings(home=home))
    try:
        if not (home / "uploaded").exists():
            upload_model(
                store,
                source=model,
                name="edge-bench",
                principal=LOCAL_USER,
                inspector=inspect_here,
            )
            (home / "uploaded").touch()
        out = home.parent / ("native" if native else "onnx" if slim else "onnx-whole")
        export_model(store, "edge-bench:1", out, native=native, with_wheels=True, slim=slim)
        return out
    finally:
        store.close()


def install(bundle: Path) -> tuple[Path, float, int]:
    """A venv with the bundle installed as its README says; (python, seconds, runtime bytes)."""
    venv = bundle.parent / f"{bundle.name}-venv"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "-q", "--no-index", "--no-deps"]
    subprocess.run(
        [*pip, "--find-links", str(bundle / "wheels"), "-r", str(bundle / "requirements.txt")],
        check=True,
    )
    seconds = time.perf_counter() - start
    site = next((venv / "lib").glob("python3*/site-packages"))
    size = sum(_tree_bytes(p) for p in site.iterdir() if not p.name.startswith(NOT_RUNTIME))
    return venv / "bin" / "python", seconds, size


def _tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cold_start(python: Path, bundle: Path, row: list[float]) -> float:
    """Seconds from launching `cloche serve` to its first answered prediction."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/models/edge-bench:predict"
    shutil.rmtree(bundle / "spool", ignore_errors=True)
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(python), "-m", "cloche", "serve", str(bundle), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(timeout=5) as http:
            while True:
                try:
                    if http.post(url, json={"instances": [row]}).status_code == 200:
                        return time.perf_counter() - start
                except httpx.TransportError:
                    pass
                if proc.poll() is not None:
                    raise RuntimeError(f"cloche serve {bundle} exited with {proc.returncode}")
                time.sleep(0.005)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def per_call(fn: Callable[[], object], seconds: float = 1.0) -> float:
    """Median seconds per call over about ``seconds`` of calls (after a warm-up call)."""
    fn()
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 5:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def predict_times(onnx_bundle: Path, native_bundle: Path, X: np.ndarray) -> dict[str, float]:
    from cloche.runtimes import get_runtime

    onnx = get_runtime("onnx").load(onnx_bundle / "model")
    native = get_runtime("sklearn").load(native_bundle / "model")
    one, many = X[:1], X[:1000]
    return {
        "onnx_1": per_call(lambda: onnx.predict_proba(one)),
        "native_1": per_call(lambda: native.predict_proba(one)),
        "onnx_1000": per_call(lambda: onnx.predict_proba(many)),
        "native_1000": per_call(lambda: native.predict_proba(many)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["hgb", "lr"], default="hgb")
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--no-chart", action="store_true", help="do not write docs/img/bench/")
    add_replay_options(parser)
    args = parser.parse_args()
    if args.chart_from:
        write_charts(parse_rows(args.chart_from.read_text()), replay_caption(args))
        return
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="cloche-edge-bench-") as tmp:
        root = Path(tmp)
        model, X = train(args.model, root)
        home = root / "home"
        bundles = {
            "onnx": export(home, model, False),
            "onnx-whole": export(home, model, False, slim=False),
            "native": export(home, model, True),
        }
        rows = {}
        for name, bundle in bundles.items():
            python, install_s, size = install(bundle)
            starts = [cold_start(python, bundle, X[0].tolist()) for _ in range(args.starts)]
            rows[name] = (size, install_s, statistics.median(starts), min(starts))
        times = predict_times(bundles["onnx"], bundles["native"], X)
    print(
        f"\nedge bundles of a {args.model.upper()} classifier, 20 features "
        f"(median of {args.starts} cold starts)\n"
    )
    print(f"{'bundle':<10} {'runtime MB':>10} {'install s':>10} {'cold start s':>13} {'best s':>7}")
    for name, (size, install_s, median, best) in rows.items():
        print(f"{name:<10} {size / 2**20:>10.1f} {install_s:>10.1f} {median:>13.2f} {best:>7.2f}")
    size_ratio = rows["onnx"][0] / rows["native"][0]
    whole_ratio = rows["onnx-whole"][0] / rows["native"][0]
    print(f"\nONNX runtime size / native: {size_ratio:.2f} (goal <= 0.40)")
    print(f"  with onnxruntime's wheel kept whole (--no-slim): {whole_ratio:.2f}")
    print(f"ONNX cold start: {rows['onnx'][2]:.2f} s (goal <= 1.5 s)")
    print("\npredict_proba, median per call:")
    for rows_n in ("1", "1000"):
        onnx_t, native_t = times[f"onnx_{rows_n}"], times[f"native_{rows_n}"]
        print(
            f"  {rows_n:>4} rows: onnxruntime {onnx_t * 1e6:9.1f} us, original "
            f"{native_t * 1e6:9.1f} us, original / onnx = {native_t / onnx_t:5.2f}x"
        )
    if not args.no_chart:
        note = f"{args.model} classifier, median of {args.starts} cold starts, one run"
        write_charts(
            {name: (size / 2**20, median) for name, (size, _, median, _) in rows.items()},
            caption(command_line(), note),
        )


def parse_rows(output: str) -> dict[str, tuple[float, float]]:
    """bundle -> (runtime MiB, median cold start s), from this script's printed table."""
    rows = {}
    for line in output.splitlines():
        found = re.match(r"^(\S+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$", line)
        if found:
            rows[found[1]] = (float(found[2]), float(found[4]))
    return rows


def write_charts(rows: dict[str, tuple[float, float]], note: str) -> None:
    """docs/img/bench/edge-size.svg and edge-cold-start.svg: bundle -> (runtime MiB, start s)."""
    size = Chart(
        title="Edge bundles: size of the installed runtime",
        unit="MiB (lower is better)",
        categories=list(rows),
        series={"runtime": [mb for mb, _ in rows.values()]},
        caption=note,
        fmt=lambda v: f"{v:,.1f} MB",
    )
    start = Chart(
        title="Edge bundles: cold start to a first prediction",
        unit="seconds (lower is better)",
        categories=list(rows),
        series={"cold start": [s for _, s in rows.values()]},
        caption=note,
        reference=1.5,
        reference_label="goal for ONNX: 1.5 s",
        fmt=lambda v: f"{v:.2f} s",
    )
    write(size, "edge-size")
    write(start, "edge-cold-start")


if __name__ == "__main__":
    main()
