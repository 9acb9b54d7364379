"""The V1 protocol: ``{"instances": [...]}`` in, ``{"predictions": [...]}`` out. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from cloche.errors import BadRequest, InvalidInput
from cloche.serving.inputs import InputSpec, rows_to_input
from cloche.serving.protocols.json_pieces import PIECE_BYTES, loads_in_pieces

PREDICT_ONLY = frozenset({"predict"})
WITH_PROBABILITIES = frozenset({"predict", "probabilities"})
MAX_EXPLAIN_ROWS = 100  # a sampled explanation costs thousands of predictions per row
MAX_EXPLAIN_SAMPLES = 1024


def parse_json(body: bytes) -> Any:
    if not body:
        raise BadRequest("the request body is empty", hint='send JSON like {"instances": [[...]]}')
    try:
        if len(body) > 4 * PIECE_BYTES:  # a large body, on a thread: let the loop in meanwhile
            payload = loads_in_pieces(body)
            if payload is not None:
                return payload
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None


def decode_v1(body: bytes, spec: InputSpec) -> tuple[np.ndarray, frozenset[str]]:
    """The rows of a V1 request and the outputs it asks for."""
    payload = parse_json(body)
    if not isinstance(payload, dict) or "instances" not in payload:
        raise InvalidInput(
            'a V1 request is an object with an "instances" list',
            hint='send {"instances": [[1.0, 2.0, ...]]} or [{"feature": value, ...}]',
        )
    params = payload.get("parameters")
    wants_proba = isinstance(params, dict) and params.get("probabilities") is True
    rows = rows_to_input(payload["instances"], spec)
    return rows, WITH_PROBABILITIES if wants_proba else PREDICT_ONLY


def encode_v1(outputs: dict[str, np.ndarray], meta: dict[str, Any]) -> bytes:
    body: dict[str, Any] = {"predictions": _plain(outputs["predict"]), **meta}
    if "probabilities" in outputs:
        body["probabilities"] = _plain(outputs["probabilities"])
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def _plain(array: np.ndarray) -> Any:
    # orjson writes numeric arrays natively (fast); strings and objects go through lists.
    if array.dtype.kind in "biuf" and array.flags.c_contiguous:
        return array
    return array.tolist()


@dataclass(frozen=True)
class ExplainRequest:
    rows: np.ndarray
    background: np.ndarray | None  # reference rows sent with the request, if any
    samples: int
    seed: int


def decode_explain_v1(body: bytes, spec: InputSpec) -> ExplainRequest:
    """``{"instances": [...], "background": [...], "parameters": {"samples": n, "seed": s}}``;
    only ``instances`` is required."""
    payload = parse_json(body)
    if not isinstance(payload, dict) or "instances" not in payload:
        raise InvalidInput(
            'an explain request is an object with an "instances" list',
            hint='send {"instances": [[...]], "background": [[...]]} (background optional)',
        )
    rows = rows_to_input(payload["instances"], spec)
    if len(rows) > MAX_EXPLAIN_ROWS:
        raise InvalidInput(
            f"explain at most {MAX_EXPLAIN_ROWS} rows per request, got {len(rows)}",
            hint="split the rows over several requests",
        )
    params = payload.get("parameters")
    params = params if isinstance(params, dict) else {}
    samples, seed = params.get("samples", 64), params.get("seed", 0)
    # bool is an int in Python, but "samples": true is a client bug, not a number.
    if type(samples) is not int or not 2 <= samples <= MAX_EXPLAIN_SAMPLES:
        raise InvalidInput(f"parameters.samples must be an integer from 2 to {MAX_EXPLAIN_SAMPLES}")
    if type(seed) is not int or seed < 0:
        raise InvalidInput("parameters.seed must be a non-negative integer")
    background = payload.get("background")
    if background is None:
        return ExplainRequest(rows, None, samples, seed)
    try:
        return ExplainRequest(rows, rows_to_input(background, spec), samples, seed)
    except InvalidInput as exc:  # its messages name "instances"; these rows are the background
        msg = exc.message.replace("instances", "background")
        msg = msg if "background" in msg else f"background: {msg}"
        raise InvalidInput(msg, hint=exc.hint) from None
