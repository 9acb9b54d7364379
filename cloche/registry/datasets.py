"""Reading sample and baseline datasets (Parquet, CSV, JSON lines) into Arrow tables."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from cloche.errors import InvalidDataset

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl"}


def dataset_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InvalidDataset(
            f"{path.name}: unknown dataset format {path.suffix or '(no suffix)'}",
            hint="use a .parquet, .csv or .jsonl file",
        )
    return fmt


def read_table(path: Path, *, max_rows: int | None = None) -> pa.Table:
    """Read a dataset file; an unreadable or empty one is an InvalidDataset naming the file."""
    if not path.is_file():
        raise InvalidDataset(f"dataset {path} does not exist or is not a file")
    fmt = dataset_format(path)
    try:
        table = _read(path, fmt)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InvalidDataset(
            f"{path.name} is not a readable {fmt} file: {exc}",
            hint="check that the file is complete and in the format its name says",
        ) from exc
    if table.num_rows == 0 or table.num_columns == 0:
        raise InvalidDataset(f"{path.name} holds no rows", hint="give a dataset with data in it")
    return table.slice(0, max_rows) if max_rows else table


def _read(path: Path, fmt: str) -> pa.Table:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path)
    if fmt == "csv":
        import pyarrow.csv as pcsv

        return pcsv.read_csv(path)
    import pyarrow.json as pjson

    return pjson.read_json(path)
