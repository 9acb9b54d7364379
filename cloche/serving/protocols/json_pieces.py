"""Parsing a large request body in pieces, so that the thread decoding it lets go of the GIL.

A large body is decoded on a thread (serving/app.py), but one ``orjson.loads`` call holds the
GIL throughout: half a second per 50 MB on an idle core, seconds on a busy one, during which
the worker's event loop (health checks included) cannot run. Cut into pieces of about a
megabyte, each parsed by its own call, the loop gets the GIL between them.

What is cut is the one large array of a prediction request: V1's ``"instances"`` (the body's
first key) or, in an OIP v2 body with a single ``"data"`` key, that tensor's data. The cuts are
guesses checked by the parser: after a ``],`` (the end of a row) when the array holds rows, a
``},`` when it holds objects, a ``,`` when it is flat. The elements between two cuts are parsed
as ``[`` + piece + ``]``, and the body before the array with the rest as one document. If they
all parse, together they hold exactly the values of the whole: a piece that starts or ends
inside a string or a nested value does not parse (and its elements go with the rest). If the
rest does not parse, or for any other shape of body, the caller parses the body whole.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

V1_HEAD = re.compile(rb'\s*\{\s*"instances"\s*:\s*\[')
V2_DATA = re.compile(rb'"data"\s*:\s*\[')
PIECE_BYTES = 1 << 20
CUT_AFTER = {b"[": b"],", b"{": b"},"}


def loads_in_pieces(body: bytes, piece_bytes: int = PIECE_BYTES) -> dict[str, Any] | None:
    """The parsed body, or None when it is not a body that can be cut (parse it whole)."""
    head = V1_HEAD.match(body)
    key = b'"instances"'
    if head is None:
        head = V2_DATA.search(body) if body.lstrip()[:1] == b"{" else None
        key = b'"data"'
    # A second such key would be a second array (or would win over the first): parse it whole.
    if head is None or body.find(key, head.end()) != -1 or body.find(key) < head.start():
        return None
    start = head.end()
    # Cut after the end of an element: a row's "]", an object's "}", or any comma of a flat list.
    cut_at = CUT_AFTER.get(body[start:].lstrip()[:1], b",")
    values: list[Any] = []
    while True:
        cut = body.find(cut_at, start + piece_bytes)
        if cut == -1:
            break
        end = cut + len(cut_at) - 1  # the piece ends before the comma
        try:
            values.extend(orjson.loads(b"[" + body[start:end] + b"]"))
        except orjson.JSONDecodeError:
            break  # a bad guess (past the array's end, inside a string): the rest goes whole
        start = end + 1
    try:
        payload = orjson.loads(body[: head.end()] + body[start:])
    except orjson.JSONDecodeError:
        return None  # a bad body: the whole parse says what is wrong, and where
    array = _the_array(payload, key)
    if array is None:
        return None
    array[:0] = values
    return payload  # type: ignore[no-any-return]


def _the_array(payload: Any, key: bytes) -> list[Any] | None:
    """The array that was cut, found in the parsed rest; None if it is not where it must be."""
    if not isinstance(payload, dict):
        return None
    if key == b'"instances"':
        found = payload.get("instances")
        return found if isinstance(found, list) else None
    inputs = payload.get("inputs")
    if not isinstance(inputs, list):
        return None
    holders = [t for t in inputs if isinstance(t, dict) and "data" in t]
    if len(holders) != 1 or not isinstance(holders[0]["data"], list):
        return None  # the one "data" key was somewhere else: parse it whole
    return holders[0]["data"]  # type: ignore[no-any-return]
