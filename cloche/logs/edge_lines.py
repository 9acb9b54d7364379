"""The lines of an uploaded edge log chunk: each checked field by field, then relabelled.

An edge server's lines join the central payload log, whose compaction writes them into Parquet
with fixed types and whose monitors judge the model by them. A line with a wrong field would
fail compaction for every row beside it, so each is checked first: a chunk holding one bad line
is refused whole, naming the line, and nothing of it is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from cloche.errors import InvalidInput
from cloche.serving.payload_log import META_COLUMNS

ENDPOINT_AT = META_COLUMNS.index("endpoint")
DEPLOYMENT_AT = META_COLUMNS.index("deployment_id")
KINDS = ("predict", "explain")


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return (_int(value) or isinstance(value, float)) and value >= 0


def _text_or_null(value: Any) -> bool:
    return value is None or isinstance(value, str)


# Each meta field's test and what it should be, in META_COLUMNS order (the types of
# logs/table.py's SCHEMA). "kind" is last; lines written before it have one field less.
FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "time": (lambda v: _int(v) and 0 <= v < 2**53, "milliseconds since the epoch"),
    "request_id": (_text_or_null, "a string or null"),
    "endpoint": (lambda v: isinstance(v, str), "a string"),
    "model": (_text_or_null, "a string or null"),
    "version": (lambda v: v is None or (_int(v) and 0 <= v < 2**31), "a version number"),
    "deployment_id": (lambda v: v is None or _int(v), "an integer or null"),
    "shadow": (lambda v: isinstance(v, bool), "true or false"),
    "status": (lambda v: _int(v) and 100 <= v <= 599, "an HTTP status"),
    "latency_ms": (lambda v: v is None or _number(v), "a number of milliseconds"),
    "error": (_text_or_null, "a string or null"),
    "kind": (lambda v: v is None or v in KINDS, "predict, explain or null"),
}
assert tuple(FIELDS) == META_COLUMNS  # a column added to the log must be checked here too


def relabel_lines(body: bytes, endpoint: str) -> list[bytes]:
    """The chunk's lines, each checked and set to ``endpoint`` (the edge knew only its model)."""
    if not body.endswith(b"\n"):
        raise InvalidInput("an edge log chunk must be whole lines, each ending in a newline")
    return [_relabel(line, n, endpoint) for n, line in enumerate(body[:-1].split(b"\n"), 1)]


def _relabel(line: bytes, number: int, endpoint: str) -> bytes:
    parts = line.split(b"\t")
    if len(parts) != 3:
        raise _bad(number, "it is not three tab-separated JSON parts (meta, inputs, outputs)")
    try:
        meta = orjson.loads(parts[0])
        for part in parts[1:]:
            orjson.loads(part)
    except orjson.JSONDecodeError:
        raise _bad(number, "a part is not valid JSON") from None
    if not isinstance(meta, list) or len(meta) not in (len(META_COLUMNS), len(META_COLUMNS) - 1):
        raise _bad(number, f"its meta part is not a list of {len(META_COLUMNS)} fields")
    for (name, (valid, expected)), value in zip(FIELDS.items(), meta, strict=False):
        if not valid(value):
            raise _bad(number, f"{name} must be {expected}, not {orjson.dumps(value)[:40]!r}")
    meta[ENDPOINT_AT] = endpoint
    meta[DEPLOYMENT_AT] = None  # served at the edge, by no deployment of this server
    return b"%s\t%s\t%s\n" % (orjson.dumps(meta), parts[1], parts[2])


def _bad(number: int, why: str) -> InvalidInput:
    return InvalidInput(
        f"line {number} of the chunk is not a cloche payload log line: {why}",
        hint="upload a spool with `cloche edge sync`; nothing of this chunk was kept",
        line=number,
    )
