"""Finding input files, counting their rows, and reading them back in pieces."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from cloche.batch import sources
from cloche.batch.plan import JobPlan, build_chunks, tasks_for
from cloche.batch.schema import READ_ERROR_COLUMN, ColumnPlan
from cloche.batch.sources import InputFile
from cloche.errors import InvalidDataset
from tests.unit.batch.conftest import numeric_table, write


def test_folder_lists_data_files_sorted_and_skips_hidden_and_underscore_files(
    tmp_path: Path,
) -> None:
    for name in ["b.parquet", "a.parquet", "_SUCCESS", ".a.parquet.crc", "notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    fmt, paths = sources.resolve_inputs(str(tmp_path))
    assert fmt == "parquet"
    assert paths == [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")]


def test_given_format_reads_files_whose_names_do_not_say(tmp_path: Path) -> None:
    (tmp_path / "part-0").write_bytes(b"a\n1\n")
    fmt, paths = sources.resolve_inputs(str(tmp_path), "CSV")
    assert (fmt, paths) == ("csv", [str(tmp_path / "part-0")])


@pytest.mark.parametrize(
    ("given", "message"),
    [("missing", "does not exist"), ("*.csv", "no input files"), ("data.orc", "cannot tell")],
)
def test_unusable_inputs_are_refused(tmp_path: Path, given: str, message: str) -> None:
    (tmp_path / "data.orc").write_bytes(b"")
    with pytest.raises(InvalidDataset, match=message):
        sources.resolve_inputs(str(tmp_path / given))


def test_memory_url_files_keep_their_protocol() -> None:
    import fsspec

    with fsspec.open("memory://sources-test/x.jsonl", "wb") as fh:
        fh.write(b'{"a": 1}\n')
    assert sources.resolve_inputs("memory://sources-test/*.jsonl") == (
        "jsonl",
        ["memory:///sources-test/x.jsonl"],
    )


def test_rows_are_counted_per_format(tmp_path: Path) -> None:
    table = numeric_table(1000)
    parquet = sources.describe(
        str(write(table, tmp_path / "a.parquet", row_group_size=300)), "parquet"
    )
    assert (parquet.rows, parquet.row_groups) == (1000, (300, 300, 300, 100))
    assert sources.describe(str(write(table, tmp_path / "a.csv")), "csv").rows == 1000
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_bytes(b'\n{"a": 1}\n  \n{"a": 2}\r\n\n{"a": 3}')  # blank lines are not rows
    assert sources.describe(str(jsonl), "jsonl").rows == 3


def test_jsonl_count_agrees_with_the_reader_across_block_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "BLOCK_BYTES", 1000)  # many blocks, lines cut at their edges
    lines = [b'{"a": %d}' % i if i % 7 else b"   " for i in range(5000)]
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"\n".join(lines))
    counted = sources.describe(str(path), "jsonl").rows
    schema = pa.schema([("a", pa.int64())])
    read = sum(t.num_rows for t in sources.iter_text(str(path), "jsonl", schema))
    assert counted == read == 5000 - len(range(0, 5000, 7))


def test_jsonl_block_with_a_stray_type_is_read_as_text_rows(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"a": 1.5}\n{"a": "x"}\n{"a": 2}\nnot json\n')
    (table,) = sources.iter_text(str(path), "jsonl", pa.schema([("a", pa.float64())]))
    assert table.column("a").to_pylist() == ["1.5", "x", "2", None]
    assert table.column(READ_ERROR_COLUMN).null_count == 3


def test_parquet_chunk_reads_only_its_rows(tmp_path: Path) -> None:
    table = numeric_table(1000)
    path = write(table, tmp_path / "a.parquet", row_group_size=128)
    file = sources.describe(str(path), "parquet")
    batches = list(sources.iter_parquet(file, 250, 610, ["id", "f1"], 100))
    got = pa.Table.from_batches(batches)
    assert got.column_names == ["id", "f1"] and got.column("id").to_pylist() == list(
        range(250, 610)
    )
    assert max(b.num_rows for b in batches) <= 100


def test_chunks_never_straddle_files_and_text_files_are_one_task_each() -> None:
    files = [InputFile("a", 1, 250), InputFile("b", 1, 0), InputFile("c", 1, 130)]
    chunks = build_chunks(files, 100)
    assert [(c.file, c.start, c.stop, c.first_row) for c in chunks] == [
        (0, 0, 100, 0),
        (0, 100, 200, 100),
        (0, 200, 250, 200),
        (2, 0, 100, 250),
        (2, 100, 130, 350),
    ]

    plan = JobPlan(
        "out", "csv", "parquet", files, chunks, ColumnPlan((), (), True), "m", "s", "x", {}
    )
    assert [t.chunks for t in tasks_for(plan, done={1})] == [(0, 2), (3, 4)]
    plan.input_format = "parquet"
    assert [t.chunks for t in tasks_for(plan, done={1})] == [(0,), (2,), (3,), (4,)]
