"""The Ray engine on a local Ray: the same files, row for row, as the local engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import cloche
from cloche.config import Settings

FEATURES = ["tenure", "spend", "visits", "age"]


def _inputs(folder: Path) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(11)
    for i, rows in enumerate((1_500, 700)):
        X = rng.normal(size=(rows, len(FEATURES)))
        table = pa.table({n: X[:, j] for j, n in enumerate(FEATURES)})
        table = table.append_column("key", pa.array(np.arange(rows) + 10_000 * i))
        pq.write_table(table, folder / f"part-{i}.parquet", row_group_size=400)
    # One row the model cannot take: it goes to errors-*.jsonl with either engine.
    bad = pa.table({n: pa.array([None], pa.float64()) for n in FEATURES})
    bad = bad.append_column("key", pa.array([99_999]))
    pq.write_table(bad, folder / "part-2.parquet")
    return folder


@pytest.mark.slow
def test_ray_engine_writes_the_same_output_as_the_local_engine(
    settings: Settings, sklearn_model_file: Path, tmp_path: Path
) -> None:
    pytest.importorskip("ray")
    data = _inputs(tmp_path / "in")
    with cloche.Client(settings=settings) as client:
        client.models.upload(sklearn_model_file, name="churn")
        common = {"input": str(data), "id_column": "key", "chunk_rows": 500}
        local = client.batch.run("churn", output=str(tmp_path / "local"), workers=2, **common)
        # One actor: Ray's start-up dominates on a small machine (about 10 s per worker).
        on_ray = client.batch.run(
            "churn", output=str(tmp_path / "ray"), engine="ray", workers=1, **common
        )
    assert local.state == on_ray.state, (local.message, on_ray.message)
    assert on_ray.progress["rows_done"] == on_ray.progress["rows_total"] == 2_201
    names = sorted(p.name for p in (tmp_path / "local").iterdir() if not p.name.startswith("."))
    assert names == sorted(
        p.name for p in (tmp_path / "ray").iterdir() if not p.name.startswith(".")
    )
    for name in names:
        if name.startswith("predictions-"):
            assert pq.read_table(tmp_path / "ray" / name).equals(
                pq.read_table(tmp_path / "local" / name)
            ), name
        elif name.startswith("errors-"):
            assert (tmp_path / "ray" / name).read_bytes() == (
                tmp_path / "local" / name
            ).read_bytes()
