"""Datasets are data: reading one never unpickles anything it carries."""

from __future__ import annotations

import pickle
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cloche.registry.datasets import read_table


class _Touch:
    """Unpickling this creates a file: the proof that something was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


def test_a_parquet_file_carrying_a_pickled_extension_type_is_read_without_unpickling(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "unpickled"
    field = pa.field(
        "x",
        pa.binary(),
        metadata={
            b"ARROW:extension:name": b"arrow.py_extension_type",
            b"ARROW:extension:metadata": pickle.dumps(_Touch(marker)),
        },
    )
    path = tmp_path / "evil.parquet"
    pq.write_table(pa.table({"x": [b"a", b"b"]}, schema=pa.schema([field])), path)

    table = read_table(path)

    assert table.num_rows == 2 and table.schema.field("x").type == pa.binary()
    assert not marker.exists()
