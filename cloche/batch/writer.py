"""Writing a chunk's output so that it is either absent or complete, never half there.

A chunk streams its predictions (and, if it has bad rows, its errors) into temporary files in the
output folder, named ``<final name>.tmp-<pid>-<random>``. Its commit flushes and fsyncs the errors
file and renames it, then does the same for the predictions file: that last ``os.replace`` is the
commit, so a chunk is done exactly when its predictions file exists under its final name. Temp
names are unique per process, so a worker still finishing after its parent was killed can never
rename a file that a resumed job is writing.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from cloche.batch.plan import JobPlan
from cloche.batch.scoring import ScoredChunk

TEMP_MARK = ".tmp-"


@dataclass(frozen=True)
class ChunkResult:
    """What a committed chunk holds, reported to the parent process."""

    index: int
    rows: int  # input rows
    errors: int  # of which bad


class _TempFile:
    def __init__(self, final: Path) -> None:
        self.final = final
        self.path = final.with_name(f"{final.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
        self.fh: BinaryIO = self.path.open("wb")

    def commit(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        os.replace(self.path, self.final)

    def discard(self) -> None:
        self.fh.close()
        self.path.unlink(missing_ok=True)


class ChunkOutput:
    """One chunk's predictions and errors, written under temp names and committed together."""

    def __init__(self, plan: JobPlan, index: int) -> None:
        folder = Path(plan.output_dir)
        self.index = index
        self.format = plan.output_format
        self.rows = 0
        self.error_rows = 0
        self._predictions = _TempFile(folder / plan.prediction_name(index))
        self._errors_final = folder / plan.error_name(index)
        self._errors: _TempFile | None = None
        self._writer: Any = None
        self._schema: pa.Schema | None = None

    def write(self, scored: ScoredChunk, input_rows: int) -> None:
        self.rows += input_rows
        self._schema = scored.table.schema
        if scored.table.num_rows:
            self._table_writer(scored.table.schema).write_table(scored.table)
        if scored.errors:
            if self._errors is None:
                self._errors = _TempFile(self._errors_final)
            lines = b"".join(_json_line(e) for e in scored.errors)
            self._errors.fh.write(lines)
            self.error_rows += len(scored.errors)

    def commit(self) -> ChunkResult:
        """Make the chunk done: errors first, then the predictions file (the commit itself)."""
        if self._schema is not None:
            self._table_writer(self._schema)  # a chunk whose rows all failed: a header only
        if self._writer is not None:
            self._writer.close()
        if self._errors is not None:
            self._errors.commit()
        else:
            self._errors_final.unlink(missing_ok=True)  # left by an earlier, unfinished try
        self._predictions.commit()
        _fsync_dir(self._predictions.final.parent)
        return ChunkResult(self.index, self.rows, self.error_rows)

    def discard(self) -> None:
        try:
            if self._writer is not None:
                self._writer.close()
        finally:
            self._predictions.discard()
            if self._errors is not None:
                self._errors.discard()

    def _table_writer(self, schema: pa.Schema) -> Any:
        if self._writer is None:
            fh = self._predictions.fh
            if self.format == "parquet":
                self._writer = pq.ParquetWriter(fh, schema)
            elif self.format == "csv":
                self._writer = pcsv.CSVWriter(fh, schema)
            else:
                self._writer = _JsonLinesWriter(fh)
        return self._writer


class _JsonLinesWriter:
    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh

    def write_table(self, table: pa.Table) -> None:
        self.fh.write(b"".join(_json_line(row) for row in table.to_pylist()))

    def close(self) -> None:
        pass  # the file belongs to the temp file, which flushes and closes it


def _json_line(value: Any) -> bytes:
    # default=str: decimals and other values JSON has no type for are written as text.
    return orjson.dumps(value, default=str, option=orjson.OPT_APPEND_NEWLINE)


def _fsync_dir(folder: Path) -> None:
    """Make the renames durable too (a crash could otherwise forget them)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def done_chunks(plan: JobPlan) -> set[int]:
    """Chunks whose predictions file exists under its final name."""
    names = set(os.listdir(plan.output_dir))
    return {c.index for c in plan.chunks if plan.prediction_name(c.index) in names}


def error_rows_on_disk(plan: JobPlan, index: int) -> int:
    """The bad rows of a done chunk: the lines of its errors file (0 if it has none)."""
    path = Path(plan.output_dir) / plan.error_name(index)
    if not path.is_file():
        return 0
    with path.open("rb") as fh:
        return sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b""))


def clean_unfinished(plan: JobPlan, done: set[int]) -> None:
    """Delete temp files, and errors files of chunks that never committed, before a (re)run."""
    folder = Path(plan.output_dir)
    unfinished = {plan.error_name(c.index) for c in plan.chunks if c.index not in done}
    for name in os.listdir(folder):
        own = name.startswith(("predictions-", "errors-"))
        if (own and TEMP_MARK in name) or name in unfinished:
            (folder / name).unlink(missing_ok=True)
