"""Parsing a large ``{"instances": [...]}`` body in pieces, so that a thread lets go of the GIL.

A large body is decoded on a thread (serving/app.py), but one ``orjson.loads`` call holds the
GIL throughout: half a second per 50 MB on an idle core, seconds on a busy one, during which
the worker's event loop (health checks included) cannot run. Cut into pieces of about a
megabyte, each parsed by its own call, the loop gets the GIL between them.

The cuts are guesses, checked by the parser: a body is cut after a ``],`` (the end of a row),
the rows between two cuts are parsed as ``[`` + piece + ``]``, and the last piece, with the rest
of the object, as ``{"instances": [`` + piece. If every piece parses, they hold exactly the
values of the whole (a piece that starts or ends inside a string or a nested value does not
parse). Otherwise, or for any other shape of body, the caller parses it whole.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

HEAD = re.compile(rb'\s*\{\s*"instances"\s*:\s*\[')
PIECE_BYTES = 1 << 20


def loads_in_pieces(body: bytes, piece_bytes: int = PIECE_BYTES) -> dict[str, Any] | None:
    """The parsed body, or None when it is not a V1 body that can be cut (parse it whole)."""
    head = HEAD.match(body)
    if head is None or body.find(b'"instances"', head.end()) != -1:
        return None  # (a second "instances" key would win over the first: parse it whole)
    rows: list[Any] = []
    start = head.end()
    try:
        while True:
            cut = body.find(b"],", start + piece_bytes)
            if cut == -1:
                break
            piece = orjson.loads(b"[" + body[start : cut + 1] + b"]")
            rows.extend(piece)
            start = cut + 2
        payload = orjson.loads(b'{"instances":[' + body[start:])
    except orjson.JSONDecodeError:
        return None  # a bad guess or a bad body: the whole parse says which, and where
    if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list):
        return None
    if rows:
        rows.extend(payload["instances"])
        payload["instances"] = rows
    return payload
