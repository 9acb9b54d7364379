"""The local engine end to end, in the test process (workers=1): inputs, outputs, bad rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cloche import __version__
from cloche.batch import engine_local
from cloche.batch.spec import JobSpec, Progress
from tests.unit.batch.conftest import (
    FEATURES,
    Models,
    Run,
    mixed_table,
    numeric_table,
    read_output,
    write,
)


def _expected(models: Models, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    frame = table.select(FEATURES).to_pandas()
    estimator = models.estimators["numeric"]
    return estimator.predict(frame), estimator.predict_proba(frame)


def test_parquet_folder_is_scored_with_id_passthrough_and_probabilities(
    models: Models, run: Run, tmp_path: Path
) -> None:
    first, second = numeric_table(300, seed=3), numeric_table(200, seed=4, first_id=300)
    write(first, tmp_path / "in" / "a.parquet", row_group_size=70)
    write(second, tmp_path / "in" / "b.parquet")
    (tmp_path / "in" / "_SUCCESS").write_text("")  # other tools' markers are not input

    outcome = run(
        models.numeric, input=str(tmp_path / "in"), id_column="id", passthrough=("segment",),
        chunk_rows=128,
    )  # fmt: skip

    assert outcome.state == "succeeded" and outcome.rows_scored == 500 and not outcome.error_rows
    out = read_output(tmp_path / "out")
    assert out.column_names == ["id", "segment", "prediction", "probability_0", "probability_1"]
    both = pa.concat_tables([first, second])
    labels, proba = _expected(models, both)
    assert out.column("id").to_pylist() == list(range(500))
    assert out.column("segment").equals(both.column("segment"))
    assert out.column("prediction").to_pylist() == labels.tolist()
    np.testing.assert_allclose(out.column("probability_1").to_numpy(), proba[:, 1])


def test_manifest_records_inputs_outputs_counts_and_versions(
    models: Models, run: Run, tmp_path: Path
) -> None:
    source = write(numeric_table(250), tmp_path / "in.parquet")
    outcome = run(models.numeric, input=str(source), chunk_rows=100)

    manifest = orjson.loads(Path(outcome.manifest_path).read_bytes())
    assert manifest["inputs"] == [
        {"path": str(source), "size_bytes": source.stat().st_size, "rows": 250}
    ]
    assert [o["rows"] for o in manifest["outputs"]] == [100, 100, 50]
    assert manifest["outputs"][0]["name"] == "predictions-00000-of-00003.parquet"
    assert (manifest["state"], manifest["rows_scored"], manifest["error_rows"]) == (
        "succeeded",
        250,
        0,
    )
    assert manifest["model"] == {
        "ref": "numeric:1",
        "framework": "sklearn",
        "sha256": "sha-numeric:1",
    }
    assert manifest["engine"] == "local" and manifest["cloche_version"] == __version__
    assert manifest["job"]["chunk_rows"] == 100 and manifest["finished"].endswith("Z")


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_each_input_format_gives_the_same_predictions(
    models: Models, run: Run, tmp_path: Path, suffix: str
) -> None:
    table = numeric_table(150, seed=5)
    source = write(table, tmp_path / f"in{suffix}")
    outcome = run(models.numeric, input=str(source), id_column="id", chunk_rows=64)

    assert outcome.state == "succeeded"
    out = read_output(tmp_path / "out")
    assert out.column("prediction").to_pylist() == _expected(models, table)[0].tolist()
    assert out.column("id").to_pylist() == list(range(150))


@pytest.mark.parametrize("output_format", ["parquet", "csv", "jsonl"])
def test_each_output_format_holds_the_same_rows(
    models: Models, run: Run, tmp_path: Path, output_format: str
) -> None:
    table = numeric_table(90, seed=6)
    source = write(table, tmp_path / "in.parquet")
    run(models.numeric, input=str(source), output_format=output_format, chunk_rows=40)

    names = sorted(p.name for p in (tmp_path / "out").glob("predictions-*"))
    assert names == [f"predictions-0000{i}-of-00003.{output_format}" for i in range(3)]
    out = read_output(tmp_path / "out")
    assert out.column("row").to_pylist() == list(range(90))
    assert out.column("prediction").to_pylist() == _expected(models, table)[0].tolist()


def test_glob_and_file_url_read_the_same_files(models: Models, run: Run, tmp_path: Path) -> None:
    for i in range(3):
        write(numeric_table(20, seed=i, first_id=20 * i), tmp_path / "in" / f"p{i}.parquet")
    write(numeric_table(5), tmp_path / "in" / "other.csv")  # not matched by the glob

    by_glob = run(models.numeric, input=str(tmp_path / "in" / "p*.parquet"), id_column="id")
    by_url = run(
        models.numeric, input=f"file://{tmp_path}/in/p*.parquet", id_column="id",
        output=str(tmp_path / "url"),
    )  # fmt: skip
    assert by_glob.rows_total == by_url.rows_total == 60
    assert read_output(tmp_path / "out").equals(read_output(tmp_path / "url"))


def test_memory_url_input_is_scored(models: Models, run: Run) -> None:
    import fsspec

    table = numeric_table(40, seed=8)
    with fsspec.open("memory://batch-test/in.parquet", "wb") as fh:
        pq.write_table(table, fh)
    outcome = run(models.numeric, input="memory://batch-test/in.parquet")
    assert outcome.state == "succeeded" and outcome.rows_scored == 40


def test_rows_are_numbered_across_files_and_chunks_never_straddle_them(
    models: Models, run: Run, tmp_path: Path
) -> None:
    write(numeric_table(250, seed=1), tmp_path / "in" / "a.csv")
    write(numeric_table(130, seed=2), tmp_path / "in" / "b.csv")
    outcome = run(models.numeric, input=str(tmp_path / "in"), chunk_rows=100)

    sizes = [pq.read_metadata(f).num_rows for f in outcome.output_files]
    assert sizes == [100, 100, 50, 100, 30]
    assert read_output(tmp_path / "out").column("row").to_pylist() == list(range(380))


def test_text_feature_model_is_scored_from_csv_with_label_probabilities(
    models: Models, run: Run, tmp_path: Path
) -> None:
    table = mixed_table(120, seed=9)
    source = write(table, tmp_path / "in.csv")
    outcome = run(models.mixed, input=str(source), id_column="id", output_format="jsonl")

    assert outcome.state == "succeeded"
    out = read_output(tmp_path / "out")
    expected = models.estimators["mixed"].predict(table.drop_columns(["id"]).to_pandas())
    assert out.column("prediction").to_pylist() == expected.tolist()
    assert out.column_names[-2:] == ["probability_no", "probability_yes"]


def test_regressor_predicts_values_without_probabilities(
    models: Models, run: Run, tmp_path: Path
) -> None:
    table = numeric_table(50, seed=10)
    run(models.regressor, input=str(write(table, tmp_path / "in.jsonl")))

    out = read_output(tmp_path / "out")
    assert out.column_names == ["row", "prediction"]
    expected = models.estimators["regressor"].predict(table.select(FEATURES[:4]).to_pandas())
    np.testing.assert_allclose(out.column("prediction").to_numpy(), expected)


def test_tensor_model_reads_every_numeric_column_but_id_and_passthrough(
    models: Models, run: Run, tmp_path: Path
) -> None:
    table = numeric_table(60, seed=11)
    outcome = run(
        models.tensor, input=str(write(table, tmp_path / "in.parquet")), id_column="id",
        passthrough=("segment",),
    )  # fmt: skip

    assert outcome.state == "succeeded"
    expected = models.estimators["tensor"].predict(table.select(FEATURES).to_pandas().to_numpy())
    assert read_output(tmp_path / "out").column("prediction").to_pylist() == expected.tolist()


def test_progress_is_reported_at_start_and_after_each_chunk(models: Models, tmp_path: Path) -> None:
    source = write(numeric_table(100), tmp_path / "in.parquet")
    spec = JobSpec(input=str(source), output=str(tmp_path / "out"), workers=1, chunk_rows=30)
    seen: list[tuple[int, int]] = []

    def progress(p: Progress) -> None:
        seen.append((p.chunks_done, p.rows_done))

    plan = engine_local.prepare(spec, models.numeric)
    engine_local.execute(plan, spec, models.numeric, progress=progress)
    assert seen == [(0, 0), (1, 30), (2, 60), (3, 90), (4, 100)]
