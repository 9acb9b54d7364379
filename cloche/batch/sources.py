"""A batch job's input: finding its files, counting their rows, reading them in record batches.

An input is a file, a folder, a glob or an fsspec URL; every file is opened through fsspec, so the
same code reads a local disk or an object store. Rows are counted up front (Parquet from its
footer, CSV and JSON lines in one streaming pass) because the plan cuts chunks by row number.
Nothing here holds a whole file in memory.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, BinaryIO

import fsspec
import orjson
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.json as pjson
import pyarrow.parquet as pq

from cloche.batch.schema import READ_ERROR_COLUMN
from cloche.errors import InvalidDataset

SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"} | {
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
}
FORMAT_NAMES = {"parquet": "parquet", "pq": "parquet", "csv": "csv", "jsonl": "jsonl"} | {
    "json": "jsonl",
    "ndjson": "jsonl",
}
BLOCK_BYTES = 4 << 20  # text read per step: bounds memory whatever the file size
_BLANK_AFTER_NEWLINE = re.compile(rb"\n[ \t\r]*(?=\n)")
_BLANK_FIRST_LINE = re.compile(rb"[ \t\r]*\n")


@dataclass(frozen=True)
class InputFile:
    """One input file as planned: where it is, its size and rows (to notice a change)."""

    path: str  # a local path or an fsspec URL, as worker processes reopen it
    size_bytes: int
    rows: int
    mtime: str | None = None
    row_groups: tuple[int, ...] = ()  # Parquet: rows in each row group

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "row_groups": list(self.row_groups)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputFile:
        return cls(**{**data, "row_groups": tuple(data.get("row_groups", ()))})


def resolve_inputs(input: str, input_format: str | None = None) -> tuple[str, list[str]]:
    """The format and the sorted file paths (or URLs) that ``input`` names."""
    fs, path = fsspec.core.url_to_fs(input if "://" in input else os.path.expanduser(input))
    if any(c in path for c in "*?["):
        found = sorted(p for p in fs.glob(path) if fs.isfile(p))
    elif fs.isdir(path):
        found = _folder_files(fs, path, input_format)
    elif fs.isfile(path):
        found = [path]
    else:
        raise InvalidDataset(f"the input {input} does not exist", hint="check the --input path")
    if not found:
        raise InvalidDataset(
            f"no input files in {input}", hint="give a .parquet, .csv or .jsonl file or folder"
        )
    fmt = _format(found, input_format)
    local = "file" in fs.protocol if isinstance(fs.protocol, tuple) else fs.protocol == "file"
    return fmt, [p if local else fs.unstrip_protocol(p) for p in found]


def _folder_files(fs: Any, path: str, input_format: str | None) -> list[str]:
    entries = [e for e in fs.ls(path, detail=True) if e.get("type") == "file"]
    # Hidden and _-prefixed files are other tools' markers (_SUCCESS, .crc), not data.
    names = sorted(e["name"] for e in entries if not _basename(e["name"]).startswith((".", "_")))
    wanted = _format_name(input_format) if input_format else None
    data = [n for n in names if _suffix_format(n) is not None]
    if wanted:
        matching = [n for n in data if _suffix_format(n) == wanted]
        return matching or names  # files without a known suffix: the user said what they are
    return data


def _format(paths: list[str], input_format: str | None) -> str:
    if input_format:
        return _format_name(input_format)
    formats = {p: _suffix_format(p) for p in paths}
    unknown = [p for p, f in formats.items() if f is None]
    if unknown:
        raise InvalidDataset(
            f"cannot tell the format of {_basename(unknown[0])} from its name",
            hint="use .parquet, .csv or .jsonl names, or pass --input-format",
        )
    if len(set(formats.values())) > 1:
        shown = ", ".join(f"{_basename(p)} ({f})" for p, f in list(formats.items())[:6])
        raise InvalidDataset(
            f"the input mixes formats: {shown}", hint="give files of one format per job"
        )
    return str(next(iter(formats.values())))


def _format_name(name: str) -> str:
    fmt = FORMAT_NAMES.get(name.strip().lower().lstrip("."))
    if fmt is None:
        raise InvalidDataset(
            f"unknown input format {name!r}", hint="use one of: parquet, csv, jsonl"
        )
    return fmt


def _suffix_format(path: str) -> str | None:
    name = _basename(path).lower()
    return next((f for s, f in SUFFIXES.items() if name.endswith(s)), None)


def _basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def stat_file(path: str) -> tuple[int, str | None]:
    """A file's size and modification time (as text, None where the filesystem has none)."""
    fs, stripped = fsspec.core.url_to_fs(path)
    info = fs.info(stripped)
    mtime = info.get("mtime") or info.get("LastModified") or info.get("last_modified")
    return int(info.get("size") or 0), None if mtime is None else str(mtime)


def describe(path: str, fmt: str) -> InputFile:
    """Stat and count the rows of one input file; an unreadable file is named in the error."""
    size, mtime = stat_file(path)
    try:
        if fmt == "csv":
            return InputFile(path, size, _count_csv(path, size), mtime)
        with fsspec.open(path, "rb") as fh:
            if fmt == "jsonl":
                return InputFile(path, size, _count_jsonl(fh), mtime)
            meta = pq.ParquetFile(fh).metadata
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise unreadable(path, fmt, exc) from exc
    groups = tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
    return InputFile(path, size, meta.num_rows, mtime, groups)


def unreadable(path: str, fmt: str, exc: BaseException) -> InvalidDataset:
    reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    return InvalidDataset(
        f"{path} is not a readable {fmt} file: {reason}",
        hint="check that the file is complete and in the format its name says",
    )


def _count_csv(path: str, size: int) -> int:
    if size == 0:
        return 0
    with fsspec.open(path, "rb") as fh:
        first = pcsv.open_csv(fh).schema.names[0]
    # Only one column is converted (as text, which cannot fail); the parser still checks rows.
    convert = pcsv.ConvertOptions(include_columns=[first], column_types={first: pa.string()})
    # One thread: as fast here (the disk is the limit) and it holds fewer blocks in memory.
    options = pcsv.ReadOptions(use_threads=False)
    with fsspec.open(path, "rb") as fh:
        reader = pcsv.open_csv(fh, read_options=options, convert_options=convert)
        return sum(b.num_rows for b in reader)


def _count_jsonl(fh: BinaryIO) -> int:
    return sum(_rows_in(body) for body in _line_blocks(fh, BLOCK_BYTES))


def _rows_in(body: bytes) -> int:
    """Lines holding something: Arrow's JSON reader skips blank ones, and so must the count."""
    lines = body.count(b"\n") + (0 if body.endswith(b"\n") else 1)
    blank = len(_BLANK_AFTER_NEWLINE.findall(body)) + bool(_BLANK_FIRST_LINE.match(body))
    if not body.endswith(b"\n") and not body[body.rfind(b"\n") + 1 :].strip():
        blank += 1  # a blank tail after the last newline
    return lines - blank


def _line_blocks(fh: BinaryIO, size: int) -> Iterator[bytes]:
    """The file in pieces of about ``size`` bytes, each ending at a line end (but the last)."""
    carry = b""
    while block := fh.read(size):
        block = carry + block
        cut = block.rfind(b"\n") + 1
        carry = block[cut:]
        if cut:
            yield block[:cut]
    if carry:
        yield carry


def read_sample(file: InputFile, fmt: str) -> tuple[pa.Schema, pa.Table | None]:
    """The columns of a file and, for CSV and JSON lines, its first values with inferred types."""
    try:
        with fsspec.open(file.path, "rb") as fh:
            if fmt == "parquet":
                return pq.ParquetFile(fh).schema_arrow, None
            if fmt == "csv":
                reader = pcsv.open_csv(fh, read_options=pcsv.ReadOptions(block_size=1 << 20))
                batch = next(iter(reader), None)
                rows = pa.Table.from_batches([batch] if batch else [], reader.schema)
                return reader.schema, rows
            body = next(_line_blocks(fh, 1 << 20), b"")
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise unreadable(file.path, fmt, exc) from exc
    try:
        table = pjson.read_json(io.BytesIO(body))
    except pa.ArrowInvalid:  # types that change between lines: read each line as text
        table = _parse_lines(body, None)
    return table.schema, table


def iter_parquet(
    file: InputFile, start: int, stop: int, columns: list[str], batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """Rows ``start:stop`` of a Parquet file, reading only the row groups that hold them."""
    return _named(_parquet_rows(file, start, stop, columns, batch_rows), file.path, "parquet")


def _parquet_rows(
    file: InputFile, start: int, stop: int, columns: list[str], batch_rows: int
) -> Iterator[pa.RecordBatch]:
    groups, offset, first = [], 0, None
    for i, n in enumerate(file.row_groups):
        if offset < stop and offset + n > start:
            groups.append(i)
            first = offset if first is None else first
        offset += n
    row = first or 0
    with fsspec.open(file.path, "rb") as fh:
        # No pre-buffering: it reads every selected row group up front, so memory would follow
        # the chunk size instead of one row group plus one batch.
        reader = pq.ParquetFile(fh, pre_buffer=False)
        for batch in reader.iter_batches(batch_rows, groups, columns, use_threads=False):
            lo, hi = max(start - row, 0), min(stop - row, batch.num_rows)
            if hi > lo:
                yield batch.slice(lo, hi - lo)
            row += batch.num_rows
            if row >= stop:
                return


def iter_text(path: str, fmt: str, schema: pa.Schema) -> Iterator[pa.Table]:
    """A CSV or JSON lines file from the start, in tables of about BLOCK_BYTES of text.

    CSV columns are read as text; the scorer converts each value, so one bad value makes one
    bad row. JSON lines are read with ``schema``'s types, and a block that does not fit it is
    read again line by line, as text.
    """
    return _named(_text_tables(path, fmt, schema), path, fmt)


def _named(items: Iterator[Any], path: str, fmt: str) -> Iterator[Any]:
    """Read errors (a corrupt page, a torn CSV row) name the file; the job's message says it."""
    try:
        yield from items
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise unreadable(path, fmt, exc) from exc


def _text_tables(path: str, fmt: str, schema: pa.Schema) -> Iterator[pa.Table]:
    with fsspec.open(path, "rb") as fh:
        if fmt == "csv":
            convert = pcsv.ConvertOptions(
                include_columns=schema.names, column_types={n: pa.string() for n in schema.names}
            )
            options = pcsv.ReadOptions(block_size=BLOCK_BYTES)
            for batch in pcsv.open_csv(fh, read_options=options, convert_options=convert):
                yield pa.Table.from_batches([batch])
            return
        for body in _line_blocks(fh, BLOCK_BYTES):
            yield _parse_block(body, schema)


def _parse_block(body: bytes, schema: pa.Schema) -> pa.Table:
    options = pjson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    try:
        table = pjson.read_json(io.BytesIO(body), parse_options=options)
        if table.num_rows == _rows_in(body):  # e.g. two objects on one line would not be
            return table
    except pa.ArrowInvalid:
        pass
    return _parse_lines(body, schema.names)


def _parse_lines(body: bytes, names: list[str] | None) -> pa.Table:
    """Each non-blank line as one row of text columns; a line that is not an object is a bad row."""
    rows: list[dict[str, Any]] = []
    errors: list[str | None] = []
    for line in body.split(b"\n"):
        if not line.strip():
            continue
        reason: str | None = None
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            value, reason = {}, f"not valid JSON ({exc}): {line[:200].decode(errors='replace')}"
        else:
            reason = None if isinstance(value, dict) else "the line is not a JSON object"
            value = value if isinstance(value, dict) else {}
        rows.append(value)
        errors.append(reason)
    keys = names if names is not None else list(dict.fromkeys(k for r in rows for k in r))
    columns = {k: pa.array([_as_text(r.get(k)) for r in rows], pa.string()) for k in keys}
    if any(errors):
        columns[READ_ERROR_COLUMN] = pa.array(errors, pa.string())
    return pa.table(columns) if columns else pa.table({"": pa.nulls(len(rows))})


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()
