"""Small trained scikit-learn models and input files for the batch engine tests.

Models are trained once per session and saved with joblib, as the registry stores them; inputs are
written per test under tmp_path. Jobs run with ``workers=1`` (in the test process) here: the
worker-process pool has its own tests in tests/integration/test_batch_engine.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.json as pjson
import pyarrow.parquet as pq
import pytest

from cloche.batch import engine_local
from cloche.batch.spec import JobOutcome, JobSpec, ModelSource
from cloche.runtimes import get_runtime

FEATURES = [f"f{i}" for i in range(20)]


@dataclass(frozen=True)
class Models:
    numeric: ModelSource  # LogisticRegression on f0..f19, classes 0 and 1
    mixed: ModelSource  # OneHotEncoder(city) + LogisticRegression, classes "no" and "yes"
    regressor: ModelSource  # Ridge on f0..f3
    tensor: ModelSource  # LogisticRegression fitted on a bare array of 20 columns
    estimators: dict[str, Any]


def model_source(folder: Path, ref: str = "m:1") -> ModelSource:
    """A ModelSource as the registry hands it: the signature is what the runtime reads."""
    signature = get_runtime("sklearn").load(folder).signature().to_dict()
    return ModelSource(ref, "sklearn", "sha-" + ref, str(folder), signature)


def _save(root: Path, name: str, estimator: Any) -> ModelSource:
    import joblib

    folder = root / name
    folder.mkdir()
    joblib.dump(estimator, folder / "model.joblib")
    return model_source(folder, f"{name}:1")


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    root = tmp_path_factory.mktemp("models")
    frame = numeric_table(400, seed=1).select(FEATURES).to_pandas()
    label = (frame["f0"] + frame["f1"] > 0).astype(int)
    numeric = LogisticRegression(max_iter=500).fit(frame, label)
    regressor = Ridge().fit(frame[FEATURES[:4]], 2 * frame["f0"] - frame["f3"])
    tensor = LogisticRegression(max_iter=500).fit(frame.to_numpy(), label)
    mixed_frame = mixed_table(400, seed=2).select(["tenure", "spend", "city"]).to_pandas()
    churn = np.where((mixed_frame["tenure"] < 20) | (mixed_frame["city"] == "nice"), "yes", "no")
    encode = ColumnTransformer(
        [("city", OneHotEncoder(handle_unknown="ignore"), ["city"])], remainder="passthrough"
    )
    mixed = Pipeline([("encode", encode), ("model", LogisticRegression(max_iter=1000))])
    mixed.fit(pd.DataFrame(mixed_frame), churn)
    estimators = {"numeric": numeric, "mixed": mixed, "regressor": regressor, "tensor": tensor}
    return Models(
        numeric=_save(root, "numeric", numeric),
        mixed=_save(root, "mixed", mixed),
        regressor=_save(root, "regressor", regressor),
        tensor=_save(root, "tensor", tensor),
        estimators=estimators,
    )


def numeric_table(rows: int, *, seed: int = 0, first_id: int = 0) -> pa.Table:
    """id, the 20 features and a text "segment" column to pass through."""
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {"id": np.arange(first_id, first_id + rows, dtype=np.int64)}
    columns.update({name: rng.normal(size=rows) for name in FEATURES})
    columns["segment"] = rng.choice(["a", "b", "c"], size=rows).astype(object)
    return pa.table(columns)


def mixed_table(rows: int, *, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "id": np.arange(rows, dtype=np.int64),
            "tenure": rng.integers(1, 60, size=rows).astype(np.float64),
            "spend": rng.gamma(2.0, 30.0, size=rows),
            "city": rng.choice(["lyon", "nice", "paris"], size=rows).astype(object),
        }
    )


def write(table: pa.Table, path: Path, **parquet: Any) -> Path:
    """Write ``table`` in the format ``path``'s suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".parquet", ".pq"):
        pq.write_table(table, path, **parquet)
    elif path.suffix == ".csv":
        pcsv.write_csv(table, path)
    else:
        with path.open("wb") as fh:
            import orjson

            fh.write(b"".join(orjson.dumps(r) + b"\n" for r in table.to_pylist()))
    return path


def read_output(folder: Path) -> pa.Table:
    """Every predictions file of a job, in chunk order, as one table."""
    tables = []
    for path in sorted(folder.glob("predictions-*")):
        if path.suffix == ".parquet":
            tables.append(pq.read_table(path))
        elif path.suffix == ".csv":
            tables.append(pcsv.read_csv(path))
        else:
            tables.append(pjson.read_json(path) if path.stat().st_size else None)
    return pa.concat_tables([t for t in tables if t is not None], promote_options="permissive")


def read_errors(folder: Path) -> list[dict[str, Any]]:
    import orjson

    lines = []
    for path in sorted(folder.glob("errors-*.jsonl")):
        lines += [orjson.loads(line) for line in path.read_bytes().splitlines()]
    return lines


Run = Callable[..., JobOutcome]


@pytest.fixture
def run(tmp_path: Path) -> Run:
    """Plan and execute a job in one call: ``run(model, input=..., **spec fields)``."""

    def run_job(model: ModelSource, **fields: Any) -> JobOutcome:
        spec = JobSpec(**{"output": str(tmp_path / "out"), "workers": 1, **fields})
        plan = engine_local.prepare(spec, model)
        return engine_local.execute(plan, spec, model)

    return run_job


def with_signature(model: ModelSource, **changes: Any) -> ModelSource:
    return replace(model, signature={**model.signature, **changes})
