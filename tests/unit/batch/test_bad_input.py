"""Bad rows, bad columns and bad files: which fail a row, which fail the job, and what they say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from cloche.batch import engine_local
from cloche.batch.spec import JobSpec
from cloche.errors import BatchSchemaMismatch, InvalidDataset, InvalidInput
from tests.unit.batch.conftest import (
    FEATURES,
    Models,
    Run,
    numeric_table,
    read_errors,
    read_output,
    write,
)


def _csv_with(path: Path, rows: int, edits: dict[tuple[int, str], object]) -> Path:
    frame = numeric_table(rows, seed=12).to_pandas()
    for (row, column), value in edits.items():
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
    frame.to_csv(path, index=False)  # NaN is written as an empty field
    return path


def test_bad_rows_go_to_errors_file_and_job_partially_succeeds(
    models: Models, run: Run, tmp_path: Path
) -> None:
    source = _csv_with(tmp_path / "in.csv", 200, {(7, "f2"): "abc", (150, "f5"): np.nan})
    outcome = run(
        models.numeric, input=str(source), id_column="id", chunk_rows=100, max_error_rate=0.5
    )

    assert (outcome.state, outcome.rows_scored, outcome.error_rows) == (
        "partially_succeeded",
        198,
        2,
    )
    names = sorted(p.name for p in (tmp_path / "out").glob("errors-*"))
    assert names == ["errors-00000-of-00002.jsonl", "errors-00001-of-00002.jsonl"]
    first, second = read_errors(tmp_path / "out")
    assert first["row"] == 7 and first["input"]["f2"] == "abc" and "'f2'" in first["message"]
    assert second["row"] == 150 and "NaN" in second["message"]  # the model's own error
    ids = read_output(tmp_path / "out").column("id").to_pylist()
    assert ids == [i for i in range(200) if i not in (7, 150)]


def test_jsonl_bad_values_and_broken_lines_are_bad_rows(
    models: Models, run: Run, tmp_path: Path
) -> None:
    source = write(numeric_table(30, seed=13), tmp_path / "in.jsonl")
    lines = source.read_bytes().splitlines()
    lines[3] = lines[3].replace(b'"f3":', b'"f3":"abc","was":')
    lines[10], lines[20] = b"{oops", b"[1, 2]"
    source.write_bytes(b"\n".join(lines) + b"\n\n")  # a blank last line is not a row

    outcome = run(models.numeric, input=str(source), max_error_rate=0.2)

    assert outcome.rows_total == 30 and outcome.error_rows == 3
    errors = read_errors(tmp_path / "out")
    assert [e["row"] for e in errors] == [3, 10, 20]
    assert "'f3'" in errors[0]["message"] and "not valid JSON" in errors[1]["message"]
    assert "not a JSON object" in errors[2]["message"]
    assert read_output(tmp_path / "out").column("row").to_pylist()[:4] == [0, 1, 2, 4]


def test_error_rate_above_the_maximum_fails_the_job_and_names_the_errors_files(
    models: Models, run: Run, tmp_path: Path
) -> None:
    edits: dict[tuple[int, str], object] = {(i, "f0"): "bad" for i in range(0, 1200, 10)}
    source = _csv_with(tmp_path / "in.csv", 1200, edits)
    outcome = run(models.numeric, input=str(source), chunk_rows=500, max_error_rate=0.05)

    assert outcome.state == "failed"
    assert "10.00%" in outcome.message and "5.00%" in outcome.message
    assert "errors-*.jsonl" in outcome.message
    assert len(outcome.output_files) == 2  # checked from 1000 rows on: after the second chunk


def test_schema_mismatch_lists_every_missing_and_mistyped_column(
    models: Models, tmp_path: Path
) -> None:
    table = numeric_table(20).drop_columns(["f3", "f7"])
    table = table.set_column(table.schema.get_field_index("f5"), "f5", table["f5"].cast("string"))
    spec = JobSpec(input=str(write(table, tmp_path / "in.parquet")), output=str(tmp_path / "out"))

    with pytest.raises(BatchSchemaMismatch) as caught:
        engine_local.prepare(spec, models.numeric)
    assert "missing columns: f3, f7" in caught.value.message
    assert "f5 (expected float64, found string)" in caught.value.message
    assert not (tmp_path / "out").exists()


def test_csv_column_where_no_value_is_a_number_is_mistyped(models: Models, tmp_path: Path) -> None:
    source = _csv_with(tmp_path / "in.csv", 10, {(i, "f4"): "x" for i in range(10)})
    spec = JobSpec(input=str(source), output=str(tmp_path / "out"))
    with pytest.raises(
        BatchSchemaMismatch, match=r"f4 \(expected float64, found string, e.g. 'x'\)"
    ):
        engine_local.prepare(spec, models.numeric)


@pytest.mark.parametrize("fields", [{"id_column": "key"}, {"passthrough": ("region",)}])
def test_missing_id_or_passthrough_column_is_named(
    models: Models, tmp_path: Path, fields: dict[str, object]
) -> None:
    source = write(numeric_table(10), tmp_path / "in.parquet")
    spec = JobSpec(input=str(source), output=str(tmp_path / "out"), **fields)  # type: ignore[arg-type]
    with pytest.raises(BatchSchemaMismatch, match="missing id/passthrough columns"):
        engine_local.prepare(spec, models.numeric)


def test_passthrough_column_named_like_an_output_column_is_refused(
    models: Models, tmp_path: Path
) -> None:
    table = numeric_table(10).rename_columns(["prediction", *FEATURES, "segment"])
    spec = JobSpec(
        input=str(write(table, tmp_path / "in.parquet")),
        output=str(tmp_path / "out"),
        passthrough=("prediction",),
    )
    with pytest.raises(InvalidInput, match="'prediction' cannot be copied"):
        engine_local.prepare(spec, models.numeric)


@pytest.mark.parametrize("name", ["empty.parquet", "blank.jsonl"])
def test_input_without_rows_is_an_error(models: Models, tmp_path: Path, name: str) -> None:
    source = tmp_path / name
    if name.endswith(".parquet"):
        write(numeric_table(0), source)
    else:
        source.write_text("\n  \n\n")
    spec = JobSpec(input=str(source), output=str(tmp_path / "out"))
    with pytest.raises(InvalidDataset, match="has no rows"):
        engine_local.prepare(spec, models.numeric)


def test_truncated_parquet_is_named_before_scoring(models: Models, tmp_path: Path) -> None:
    source = write(numeric_table(100), tmp_path / "in" / "cut.parquet")
    source.write_bytes(source.read_bytes()[:-100])
    spec = JobSpec(input=str(tmp_path / "in"), output=str(tmp_path / "out"))
    with pytest.raises(InvalidDataset, match=r"cut\.parquet is not a readable parquet file"):
        engine_local.prepare(spec, models.numeric)


def test_csv_row_with_too_many_fields_is_named_before_scoring(
    models: Models, tmp_path: Path
) -> None:
    source = write(numeric_table(50), tmp_path / "torn.csv")
    source.write_text(source.read_text() + "1,2,3\n" + "4," * 30 + "5\n")
    spec = JobSpec(input=str(source), output=str(tmp_path / "out"))
    with pytest.raises(InvalidDataset, match=r"torn\.csv is not a readable csv file"):
        engine_local.prepare(spec, models.numeric)


def test_corrupt_parquet_page_fails_the_job_naming_the_file(
    models: Models, run: Run, tmp_path: Path
) -> None:
    source = write(numeric_table(100), tmp_path / "broken.parquet")
    data = bytearray(source.read_bytes())
    footer = pq.read_metadata(source).serialized_size + 8
    data[4 : len(data) - footer] = b"\xff" * (len(data) - footer - 4)  # pages, not the footer
    source.write_bytes(bytes(data))

    outcome = run(models.numeric, input=str(source))
    assert outcome.state == "failed" and "broken.parquet" in outcome.message


def test_folder_mixing_formats_is_refused(models: Models, tmp_path: Path) -> None:
    write(numeric_table(5), tmp_path / "in" / "a.csv")
    write(numeric_table(5), tmp_path / "in" / "b.parquet")
    spec = JobSpec(input=str(tmp_path / "in"), output=str(tmp_path / "out"))
    with pytest.raises(InvalidDataset, match=r"mixes formats: a\.csv \(csv\), b\.parquet"):
        engine_local.prepare(spec, models.numeric)


def test_output_url_is_refused(models: Models, tmp_path: Path) -> None:
    spec = JobSpec(input=str(write(numeric_table(5), tmp_path / "a.csv")), output="s3://b/out")
    with pytest.raises(InvalidInput, match="must be a local folder, not a URL"):
        engine_local.prepare(spec, models.numeric)
