"""The local batch engine's worker processes: parallel runs, kill -9 and resume, dead workers.

Jobs here run with ``workers=2``, so models load in spawned processes. Most use a numpy-only
custom model (``model.py``), which starts in a fraction of the seconds scikit-learn's import
takes; one test runs a scikit-learn pipeline in the pool and checks that the coordinating process
never imported it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from cloche.batch import engine_local
from cloche.batch.spec import JobOutcome, JobSpec, ModelSource

pytestmark = pytest.mark.timeout(120)
FEATURES = [f"f{i}" for i in range(20)]

CUSTOM_MODEL = """
    import os
    import time

    import numpy as np

    SLEEP_S = {sleep}
    DIE_ON = {die_on}  # a row value that kills the worker process, as a segfault would


    class Model:
        def predict_proba(self, X):
            time.sleep(SLEEP_S)
            X = np.asarray(X, dtype=float)
            if DIE_ON is not None and (X == DIE_ON).any():
                os.kill(os.getpid(), 9)
            p = 1 / (1 + np.exp(-X.sum(axis=1)))
            return np.column_stack([1 - p, p])

        def predict(self, X):
            return (np.asarray(X, dtype=float).sum(axis=1) > 0).astype(np.int64)


    def load(path):
        if os.environ.get("FAIL_LOAD"):
            raise RuntimeError("no weights here")
        return Model()
"""

JOB_SCRIPT = """
    import json
    import sys

    from cloche.batch import engine_local
    from cloche.batch.spec import JobSpec, ModelSource


    def main():
        args = json.loads(sys.argv[1])
        spec, model = JobSpec.from_dict(args["spec"]), ModelSource(**args["model"])
        plan = engine_local.prepare(spec, model)
        outcome = engine_local.execute(plan, spec, model)
        loaded = {m.split(".")[0] for m in sys.modules} & {"sklearn", "pandas", "scipy"}
        print(json.dumps({"state": outcome.state, "frameworks": sorted(loaded)}))


    if __name__ == "__main__":  # spawned workers import this module again
        main()
"""


def _custom_model(
    tmp_path: Path, *, sleep: float = 0.0, die_on: float | None = None
) -> ModelSource:
    folder = tmp_path / "model"
    folder.mkdir()
    source = CUSTOM_MODEL.format(sleep=sleep, die_on=die_on)
    (folder / "model.py").write_text(textwrap.dedent(source))
    signature = {
        "inputs": [{"name": n, "dtype": "float64", "shape": [-1]} for n in FEATURES],
        "input_kind": "tabular",
        "task": "classification",
        "classes": [0, 1],
    }
    return ModelSource("slow:1", "custom", "sha-slow", str(folder), signature)


def _numeric_parquet(folder: Path, files: int, rows: int) -> Path:
    rng = np.random.default_rng(40)
    for i in range(files):
        columns: dict[str, Any] = {"id": np.arange(i * rows, (i + 1) * rows)}
        columns.update({n: rng.normal(size=rows) for n in FEATURES})
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns), folder / f"part-{i}.parquet", row_group_size=rows // 3)
    return folder


def _run(spec: JobSpec, model: ModelSource) -> JobOutcome:
    return engine_local.execute(engine_local.prepare(spec, model), spec, model)


def _output(folder: Path) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in sorted(folder.glob("predictions-*")))


def _job_in_subprocess(tmp_path: Path, spec: JobSpec, model: ModelSource) -> subprocess.Popen[str]:
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(JOB_SCRIPT))
    args = json.dumps({"spec": spec.to_dict(), "model": asdict(model)})
    return subprocess.Popen(
        [sys.executable, str(script), args], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )


def test_parallel_workers_give_the_same_output_as_one_and_the_parent_loads_no_framework(
    tmp_path: Path,
) -> None:
    import joblib
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    from cloche.runtimes import get_runtime

    rng = np.random.default_rng(41)
    table = pa.table(
        {
            "tenure": rng.integers(1, 60, 900).astype(float),
            "spend": rng.gamma(2.0, 30.0, 900),
            "city": rng.choice(["lyon", "nice", "paris"], 900).astype(object),
        }
    )
    encode = ColumnTransformer([("c", OneHotEncoder(), ["city"])], remainder="passthrough")
    pipeline = Pipeline([("encode", encode), ("model", LogisticRegression(max_iter=1000))])
    pipeline.fit(table.to_pandas(), table["tenure"].to_numpy() < 20)
    (tmp_path / "model").mkdir()
    joblib.dump(pipeline, tmp_path / "model" / "model.joblib")
    signature = get_runtime("sklearn").load(tmp_path / "model").signature().to_dict()
    model = ModelSource("churn:1", "sklearn", "sha", str(tmp_path / "model"), signature)
    for i in range(3):
        (tmp_path / "in").mkdir(exist_ok=True)
        pcsv.write_csv(table.slice(300 * i, 300), tmp_path / "in" / f"part-{i}.csv")

    spec = JobSpec(input=str(tmp_path / "in"), output=str(tmp_path / "two"), chunk_rows=70)
    job = _job_in_subprocess(tmp_path, JobSpec.from_dict({**spec.to_dict(), "workers": 2}), model)
    stdout, _ = job.communicate(timeout=90)
    assert json.loads(stdout) == {"state": "succeeded", "frameworks": []}

    one = JobSpec.from_dict({**spec.to_dict(), "output": str(tmp_path / "one"), "workers": 1})
    assert _run(one, model).state == "succeeded"
    assert _output(tmp_path / "two").equals(_output(tmp_path / "one"))


def test_resume_after_kill_9_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    import psutil

    model = _custom_model(tmp_path, sleep=0.05)
    source = _numeric_parquet(tmp_path / "in", files=2, rows=600)
    spec = JobSpec(
        input=str(source), output=str(tmp_path / "out"), workers=2, chunk_rows=50, id_column="id"
    )
    job = _job_in_subprocess(tmp_path, spec, model)
    done: list[Path] = []
    deadline = time.monotonic() + 60
    while len(done) < 4 and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.01)
        done = sorted((tmp_path / "out").glob("predictions-*.parquet"))
    workers = psutil.Process(job.pid).children(recursive=True)
    os.kill(job.pid, signal.SIGKILL)
    job.wait(10)
    job.stdout.close()  # type: ignore[union-attr]
    assert len(done) >= 4 and job.returncode == -signal.SIGKILL
    assert _all_exit(workers, within_s=5)  # the workers noticed their parent died

    left = sorted((tmp_path / "out").glob("predictions-*.parquet"))
    assert 4 <= len(left) < 24 and all(pq.read_metadata(p).num_rows == 50 for p in left)
    resumed = JobSpec.from_dict({**spec.to_dict(), "workers": 1})
    plan = engine_local.prepare(resumed, model, resume=True)
    outcome = engine_local.execute(plan, resumed, model)
    assert outcome.state == "succeeded" and len(outcome.output_files) == 24
    assert not list((tmp_path / "out").glob("*.tmp-*"))

    whole = JobSpec.from_dict({**resumed.to_dict(), "output": str(tmp_path / "whole")})
    assert _run(whole, model).state == "succeeded"
    assert _output(tmp_path / "out").equals(_output(tmp_path / "whole"))


def _all_exit(processes: list[Any], within_s: float) -> bool:
    """Whether every process ends in time (a zombie has ended: only its parent can reap it)."""
    import psutil

    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if all(p.status() == psutil.STATUS_ZOMBIE for p in processes if p.is_running()):
                return True
        except psutil.NoSuchProcess:
            continue
        time.sleep(0.02)
    return False


def test_a_worker_that_dies_fails_the_job_naming_the_file(tmp_path: Path) -> None:
    model = _custom_model(tmp_path, die_on=123.0)
    source = _numeric_parquet(tmp_path / "in", files=2, rows=100)
    table = pq.read_table(source / "part-1.parquet")
    f5 = table["f5"].to_numpy().copy()
    f5[42] = 123.0
    pq.write_table(table.set_column(6, "f5", pa.array(f5)), source / "part-1.parquet")

    spec = JobSpec(input=str(source), output=str(tmp_path / "out"), workers=2, chunk_rows=30)
    outcome = _run(spec, model)
    assert outcome.state == "failed"
    assert "exited unexpectedly (code -9) while scoring" in outcome.message
    assert "part-1.parquet" in outcome.message


def test_a_model_that_does_not_load_in_the_workers_fails_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAIL_LOAD", "1")  # the spawned workers inherit it
    model = _custom_model(tmp_path)
    spec = JobSpec(
        input=str(_numeric_parquet(tmp_path / "in", files=1, rows=50)),
        output=str(tmp_path / "out"),
        workers=2,
    )
    outcome = _run(spec, model)
    assert outcome.state == "failed" and "no weights here" in outcome.message
    manifest = json.loads(Path(outcome.manifest_path).read_text())
    assert manifest["state"] == "failed" and manifest["chunks_done"] == 0
