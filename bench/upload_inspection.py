"""What inspecting an upload in a child process adds to an upload over REST.

A server loads every upload in a fresh Python process without its secrets
(``cloche/registry/inspection.py``). This runs, side by side in one process: the in-process
inspector (what the local SDK does, frameworks already imported, as in a warm server), the child
inspector on the same files, and whole REST uploads to a live server on loopback, for a
scikit-learn joblib, an XGBoost JSON and an ONNX model. The added cost per upload is the child's
time minus the in-process time. After each upload a spare child imports its framework in the
background (``child_pool.py``): ``--gap`` spaces uploads so that it is ready, ``--gap 0`` shows
uploads back to back, each of which waits for those imports.

    .venv/bin/python bench/upload_inspection.py [--repeat 5] [--gap 8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

from cloche.config import Settings
from cloche.registry.inspection import ChildInspector, InspectRequest, inspect_here


def _models(folder: Path) -> dict[str, tuple[str, Path]]:
    import joblib
    import xgboost as xgb
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 8)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    sk = LogisticRegression().fit(X, y)
    joblib.dump(sk, folder / "model.joblib")
    xgb.XGBClassifier(n_estimators=20, max_depth=3).fit(X, y).save_model(folder / "model.json")
    (folder / "model.onnx").write_bytes(to_onnx(sk, X[:1]).SerializeToString())
    return {
        "sklearn (joblib)": ("sklearn", folder / "model.joblib"),
        "xgboost (json)": ("xgboost", folder / "model.json"),
        "onnx": ("onnx", folder / "model.onnx"),
    }


def _median_s(fn: Callable[[], object], repeat: int, gap_s: float = 0.0) -> float:
    times = []
    for _ in range(repeat):
        time.sleep(gap_s)  # uploads apart in time: the spare child has imported its framework
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--gap",
        type=float,
        default=8.0,
        help="seconds between uploads (0: back to back, each waits for its child's imports)",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.integration.conftest import run_server

    child = ChildInspector(timeout_s=300)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models = _models(root)
        with run_server(Settings(home=root / "home")) as server:
            print(f"{'model':18} {'in-process':>11} {'child':>8} {'added':>8} {'REST upload':>12}")
            for label, (framework, path) in models.items():
                request = InspectRequest(framework=framework, model_path=path)
                inspect_here(request)  # import the framework once, as a warm server has

                def post(path: Path = path) -> None:
                    files = [("files", (path.name, path.read_bytes()))]
                    response = httpx.post(
                        f"{server.url}/api/v1/models",
                        data={"name": "bench"},
                        files=files,
                        timeout=300,
                    )
                    response.raise_for_status()

                here = _median_s(lambda r=request: inspect_here(r), args.repeat)
                there = _median_s(lambda r=request: child(r), args.repeat, args.gap)
                rest = _median_s(post, args.repeat, args.gap)
                print(
                    f"{label:18} {here * 1e3:9.1f}ms {there * 1e3:6.0f}ms "
                    f"{(there - here) * 1e3:6.0f}ms {rest * 1e3:10.0f}ms"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
