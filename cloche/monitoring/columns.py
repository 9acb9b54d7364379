"""From payload-log rows to what profiles are built from: live requests only, and the logged
inputs (rows by position, or objects by name) as one column per feature.

Shadow answers and ``:explain`` calls are left out: they are copies of live requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc


def live_rows(table: pa.Table) -> pa.Table:
    """The rows of live requests (not shadow answers, not explanations)."""
    live = pc.invert(pc.fill_null(table["shadow"], False))
    if "kind" in table.column_names:
        live = pc.and_(live, pc.not_equal(pc.fill_null(table["kind"], "predict"), "explain"))
    return table.filter(live)


def feature_columns(inputs: pa.ChunkedArray | pa.Array, names: Sequence[str]) -> pa.Table:
    """One column per feature from the logged inputs of answered requests (JSON text, a list of
    rows each). A positional row of another width than ``names`` is skipped; an object row
    lacking a feature gives a null."""
    texts = [text for text in inputs.to_pylist() if text]
    try:  # one parse for every request: the per-request calls were most of the cost
        requests = orjson.loads("[" + ",".join(texts) + "]")
    except orjson.JSONDecodeError:  # some text is not JSON: parse the others one by one
        requests = [_loads(text) for text in texts]
    rows = [row for request in requests if isinstance(request, list) for row in request]
    width = len(names)
    if all(type(row) is list and len(row) == width for row in rows):
        columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else []
        columns = columns or [[] for _ in names]
    else:
        columns = _mixed_columns(rows, names)
    return pa.table({name: _array(col) for name, col in zip(names, columns, strict=True)})


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _mixed_columns(rows: list[Any], names: Sequence[str]) -> list[Sequence[Any]]:
    columns: list[list[Any]] = [[] for _ in names]
    width = len(names)
    for row in rows:
        if isinstance(row, dict):
            for i, name in enumerate(names):
                columns[i].append(row.get(name))
        elif isinstance(row, list) and len(row) == width:
            for i in range(width):
                columns[i].append(row[i])
    return list(columns)


def _array(values: Sequence[Any]) -> pa.Array:
    values = list(values)
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types: profiles count the mismatches
        return pa.array([None if v is None else str(v) for v in values], pa.string())
