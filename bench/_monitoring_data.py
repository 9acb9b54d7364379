"""The monitoring bench's data: seeded one-row traffic over 20 features (f0-f9 numeric, c0-c9
categorical), drifted on f1 and c3 in the second half of the hours, written through cloche's
own payload-log writer; the baseline the served version carries; the model it serves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

NUMERIC = [f"f{i}" for i in range(10)]
CATEGORICAL = [f"c{i}" for i in range(10)]
FEATURES = NUMERIC + CATEGORICAL
DRIFTED = ("f1", "c3")
END = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _category_shares(i: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, 4 * (i + 1) + 1)  # Zipf-like, 4..40 categories
    return weights / weights.sum()


def make_rows(rng: np.random.Generator, n: int, drifted: bool) -> list[list[Any]]:
    """``n`` rows as the model receives them: 10 floats then 10 strings."""
    columns: list[Any] = []
    for i in range(10):
        values = rng.normal(loc=i, scale=1 + i / 5, size=n)
        if drifted and f"f{i}" == DRIFTED[0]:
            values += 2 * (1 + i / 5)  # two standard deviations
        columns.append(values.tolist())
    for i in range(10):
        shares = _category_shares(i)
        if drifted and f"c{i}" == DRIFTED[1]:  # half the rows move to the rarest category
            shares = 0.5 * shares
            shares[-1] += 0.5
        codes = rng.choice(len(shares), size=n, p=shares)
        labels = np.array([f"k{j}" for j in range(len(shares))], dtype=object)
        columns.append(labels[codes].tolist())
    return [list(row) for row in zip(*columns, strict=True)]


def write_baseline(path: Path, rng: np.random.Generator, n: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = make_rows(rng, n, drifted=False)
    columns = list(zip(*rows, strict=True))
    pq.write_table(
        pa.table({name: list(col) for name, col in zip(FEATURES, columns, strict=True)}), path
    )


def train_model(path: Path, baseline: Path) -> None:
    import joblib
    import pyarrow.parquet as pq
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pq.read_table(baseline).slice(0, 5_000).to_pandas()
    target = (frame["f0"] > 0).astype(int)
    one_hot = OneHotEncoder(handle_unknown="ignore")
    encode = ColumnTransformer([("num", "passthrough", NUMERIC), ("cat", one_hot, CATEGORICAL)])
    model = make_pipeline(encode, LogisticRegression(max_iter=200)).fit(frame, target)
    joblib.dump(model, path)


def write_log(root: Path, rows: int, hours: int, seed: int) -> None:
    """The traffic, one line per one-row request, through cloche's payload-log writer."""
    from cloche.serving.payload_log import PayloadLog, encode_row

    rng = np.random.default_rng(seed)
    log = PayloadLog(root)
    start = END - timedelta(hours=hours)
    per_hour = rows // hours
    step_ms = 3_600_000 / per_hour
    for h in range(hours):
        first_ms = int((start + timedelta(hours=h)).timestamp() * 1000)
        X = make_rows(rng, per_hour, drifted=h >= hours // 2)
        latency = rng.lognormal(mean=1.0, sigma=0.5, size=per_hour).tolist()
        failed = rng.random(per_hour) < 0.001
        for lo in range(0, per_hour, 10_000):
            lines = []
            for i in range(lo, min(lo + 10_000, per_hour)):
                ok = not failed[i]
                lines.append(
                    encode_row(
                        (
                            first_ms + int(i * step_ms),
                            f"r{h}-{i}",
                            "churn",
                            "churn",
                            1,
                            1,
                            False,
                            200 if ok else 500,
                            latency[i],
                            [X[i]],
                            {"predict": [int(X[i][0] > 0)]} if ok else None,
                            None if ok else "boom",
                            "predict",
                        )
                    )
                )
            log.write(lines)
    log.close()
