"""The payload log as an Arrow table: the schema of its compacted Parquet partitions.

Kept apart from the segment writer (serving/payload_log.py) so that the serving side, an edge
server included, writes its log without pyarrow.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa

from cloche.serving.payload_log import COLUMNS, META_COLUMNS, Line

SCHEMA = pa.schema(
    [
        ("time", pa.timestamp("ms", tz="UTC")),
        ("request_id", pa.string()),
        ("endpoint", pa.string()),
        ("model", pa.string()),
        ("version", pa.int32()),
        ("deployment_id", pa.int64()),
        ("shadow", pa.bool_()),
        ("status", pa.int16()),
        ("latency_ms", pa.float32()),
        ("inputs", pa.string()),
        ("outputs", pa.string()),
        ("error", pa.string()),
        ("kind", pa.string()),
        # When the central server took the row from an edge server's upload (``time`` is the
        # edge's clock); null for rows served here. Partitions written before it read as null.
        ("received_at", pa.timestamp("ms", tz="UTC")),
    ]
)


def rows_to_table(lines: Sequence[Line], *, received_at: datetime | None = None) -> pa.Table:
    """Segment lines as a table with SCHEMA (inputs and outputs as JSON text); an edge
    upload's segment passes the time the central server received it."""
    columns: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    for meta, inputs, outputs in lines:
        for name, value in zip(META_COLUMNS, meta, strict=True):
            columns[name].append(value)
        columns["inputs"].append(_text(inputs))
        columns["outputs"].append(_text(outputs))
    columns["received_at"] = [received_at] * len(lines)
    return pa.Table.from_pydict(columns, schema=SCHEMA)


def _text(raw: bytes) -> str | None:
    if raw == b"null":
        return None
    if raw.startswith(b'"'):  # a failed request's raw body, kept as the text it was
        text: str = orjson.loads(raw)
        return text
    return raw.decode()
