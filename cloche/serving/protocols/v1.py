"""The V1 protocol: ``{"instances": [...]}`` in, ``{"predictions": [...]}`` out. No I/O here."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from cloche.errors import BadRequest, InvalidInput
from cloche.serving.inputs import InputSpec, rows_to_input

PREDICT_ONLY = frozenset({"predict"})
WITH_PROBABILITIES = frozenset({"predict", "probabilities"})


def parse_json(body: bytes) -> Any:
    if not body:
        raise BadRequest("the request body is empty", hint='send JSON like {"instances": [[...]]}')
    try:
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
