"""Open Inference Protocol v2 over REST: JSON tensors and the binary tensor data extension.

Pure codec: ``decode_v2(body, header_length, spec)`` -> (inputs, requested outputs, request meta)
and ``encode_v2(outputs, ...)`` -> (body, header_length or None). No I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from cloche.errors import InvalidInput, InvalidShape
from cloche.serving.inputs import CHUNK_ROWS, InputSpec, as_array, rows_to_input
from cloche.serving.protocols.v1 import parse_json

DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
BY_NAME = {v.name: k for k, v in DATATYPES.items() if k != "BYTES"}
MAX_ELEMENTS = 50_000_000
FLAT_CHUNK = 200_000  # values per piece of a flat data list (rows go CHUNK_ROWS at a time)
MAX_DIMS = 32  # numpy's own ceiling is 64; no model input comes near either
SHAPE_HINT = f"send a shape of at most {MAX_DIMS} non-negative sizes that match the data"


@dataclass(frozen=True)
class V2Request:
    inputs: np.ndarray
    outputs: frozenset[str]
    binary_outputs: frozenset[str]
    request_id: str | None


def decode_v2(
    body: bytes, header_length: int | None, spec: InputSpec, available: frozenset[str]
) -> V2Request:
    """Decode an inference request; ``available`` are the model's output names."""
    if header_length is not None:
        if not 0 < header_length <= len(body):
            raise InvalidInput(
                f"Inference-Header-Content-Length {header_length} does not fit a "
                f"{len(body)}-byte body"
            )
        header, binary = body[:header_length], memoryview(body)[header_length:]
    else:
        header, binary = body, memoryview(b"")
    payload = parse_json(header)
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list):
        raise InvalidInput('an inference request is an object with an "inputs" list')
    tensors, offset = {}, 0
    for i, item in enumerate(payload["inputs"]):
        name, array, offset = _tensor(item, i, binary, offset)
        tensors[name] = array
    if offset != len(binary):
        raise InvalidInput(f"{len(binary) - offset} bytes of binary data follow no input")
    outputs, binary_outputs = _requested(payload, available)
    rid = payload.get("id")
    return V2Request(
        assemble(tensors, spec), outputs, binary_outputs, str(rid) if rid is not None else None
    )


def _tensor(item: Any, i: int, binary: memoryview, offset: int) -> tuple[str, np.ndarray, int]:
    if not isinstance(item, dict):
        raise InvalidInput(f"inputs[{i}] must be an object with name, shape, datatype and data")
    name, shape, datatype = item.get("name"), item.get("shape"), item.get("datatype")
    where = f"input {name!r}" if isinstance(name, str) else f"inputs[{i}]"
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"{where} needs a name")
    if not isinstance(shape, list):
        raise InvalidShape(f"{where}: shape must be a list of sizes", hint=SHAPE_HINT)
    if datatype not in DATATYPES:
        raise InvalidInput(
            f"{where}: unknown datatype {datatype!r}", hint=f"use one of {', '.join(DATATYPES)}"
        )
    count = element_count(where, shape)
    params = _parameters(item, where)
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        array, offset = _from_binary(where, datatype, shape, count, size, binary, offset)
        return name, array, offset
    return name, _from_json(where, datatype, shape, count, item.get("data")), offset


def element_count(where: str, shape: Sequence[Any]) -> int:
    """How many elements ``shape`` holds, once it is known to be one a tensor can have.

    Checked in this order so that the cheap checks bound the costly ones: the number of
    dimensions first (a million-entry shape is neither walked nor echoed back), then each size
    (type() rather than isinstance(): true and false are ints to Python, not sizes), then the
    product, which Python computes exactly, so [2**40, 2**40] is refused rather than wrapped.
    """
    if len(shape) > MAX_DIMS:
        raise InvalidShape(
            f"{where}: shape has {len(shape)} dimensions, over the limit of {MAX_DIMS}",
            hint=SHAPE_HINT,
        )
    if not all(type(d) is int and d >= 0 for d in shape):
        raise InvalidShape(
            f"{where}: shape must be a list of non-negative integers, got {_show(shape)}",
            hint=SHAPE_HINT,
        )
    count = math.prod(shape)
    if count > MAX_ELEMENTS:
        raise InvalidShape(
            f"{where}: shape {list(shape)} holds {count} elements, over {MAX_ELEMENTS}",
            hint="send fewer rows per request",
        )
    return count


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _from_json(where: str, datatype: str, shape: list[int], count: int, data: Any) -> np.ndarray:
    if not isinstance(data, list):
        raise InvalidInput(f"{where}: data must be a list (or use binary_data_size)")
    dtype = DATATYPES[datatype]
    try:
        # A number too large for the datatype (1e39 as FP32) is an error, not a silent inf.
        with np.errstate(over="raise", invalid="raise"):
            array = as_array(data, dtype, FLAT_CHUNK if count == len(data) else CHUNK_ROWS)
    except (ValueError, TypeError, OverflowError, FloatingPointError):
        raise InvalidInput(f"{where}: data does not hold {datatype} values") from None
    if array.size != count:
        raise InvalidInput(f"{where}: shape {shape} needs {count} values, data holds {array.size}")
    if datatype == "BYTES" and not all(isinstance(v, str | bytes) for v in array.flat):
        raise InvalidInput(f"{where}: BYTES data must be strings")
    return array.reshape(shape)


def _from_binary(
    where: str,
    datatype: str,
    shape: list[int],
    count: int,
    size: Any,
    binary: memoryview,
    offset: int,
) -> tuple[np.ndarray, int]:
    if type(size) is not int or size < 0:
        raise InvalidShape(f"{where}: binary_data_size must be a whole number of bytes")
    itemsize = DATATYPES[datatype].itemsize
    if datatype != "BYTES" and size != count * itemsize:  # before any byte is looked at
        raise InvalidShape(
            f"{where}: shape {shape} of {datatype} needs {count * itemsize} bytes, "
            f"binary_data_size says {size}",
            hint=SHAPE_HINT,
        )
    if offset + size > len(binary):
        raise InvalidInput(f"{where}: binary_data_size {size} runs past the end of the body")
    chunk = binary[offset : offset + size]
    return from_raw(where, datatype, shape, count, chunk, "binary_data_size"), offset + size


def from_raw(
    where: str, datatype: str, shape: list[int], count: int, chunk: memoryview, sized_by: str
) -> np.ndarray:
    """A tensor from raw little-endian bytes (BYTES: 4-byte length-prefixed elements).

    The size is checked against the shape and datatype before the buffer is read;
    ``sized_by`` names what carried the size, for the error message.
    """
    if datatype == "BYTES":
        return _bytes_elements(where, chunk, shape, count)
    dtype = DATATYPES[datatype].newbyteorder("<")
    if len(chunk) != count * dtype.itemsize:
        raise InvalidShape(
            f"{where}: shape {shape} of {datatype} needs {count * dtype.itemsize} bytes, "
            f"{sized_by} says {len(chunk)}"
        )
    return np.frombuffer(chunk, dtype=dtype).reshape(shape)


def _bytes_elements(where: str, chunk: memoryview, shape: list[int], count: int) -> np.ndarray:
    # Each BYTES element is a 4-byte little-endian length, then that many bytes.
    items, pos = [], 0
    while pos < len(chunk):
        if pos + 4 > len(chunk):
            raise InvalidInput(f"{where}: truncated BYTES element")
        n = int.from_bytes(chunk[pos : pos + 4], "little")
        items.append(bytes(chunk[pos + 4 : pos + 4 + n]).decode("utf-8", "replace"))
        pos += 4 + n
    if len(items) != count or pos != len(chunk):
        raise InvalidInput(f"{where}: shape {shape} needs {count} BYTES elements, got {len(items)}")
    array = np.empty(count, dtype=object)
    array[:] = items
    return array.reshape(shape)


def _requested(
    payload: dict[str, Any], available: frozenset[str]
) -> tuple[frozenset[str], frozenset[str]]:
    asked = payload.get("outputs")
    binary_default = bool(_parameters(payload, "the request").get("binary_data_output", False))
    if asked is None:
        return available, available if binary_default else frozenset()
    if not isinstance(asked, list) or not all(isinstance(o, dict) and "name" in o for o in asked):
        raise InvalidInput('"outputs" must be a list of objects with a "name"')
    names, binary = set(), set()
    for o in asked:
        name = check_output(o["name"], available)
        names.add(name)
        if bool(_parameters(o, f"output {name!r}").get("binary_data", binary_default)):
            binary.add(name)
    return frozenset(names), frozenset(binary)


def _parameters(item: dict[str, Any], where: str) -> dict[str, Any]:
    params = item.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidInput(f'{where}: "parameters" must be an object, got {type(params).__name__}')
    return params


def check_output(name: Any, available: frozenset[str]) -> str:
    """``name`` if the model has such an output, else InvalidInput listing the ones it has."""
    if not isinstance(name, str) or name not in available:
        raise InvalidInput(
            f"unknown output {name!r}", hint=f"this model has: {', '.join(sorted(available))}"
        )
    return str(name)


def assemble(tensors: dict[str, np.ndarray], spec: InputSpec) -> np.ndarray:
    """One 2-D model input from either one [rows, features] tensor or one tensor per feature."""
    if not tensors:
        raise InvalidInput('"inputs" is empty', hint="send at least one input tensor")
    if len(tensors) == 1 and not (spec.names and next(iter(tensors)) in spec.names):
        (array,) = tensors.values()
        if array.ndim == 1 and spec.width is not None and array.shape[0] == spec.width:
            array = array.reshape(1, -1)  # one row sent flat
        if array.ndim != 2:
            raise InvalidInput(
                f"the input tensor must be 2-D [rows, features], got shape {list(array.shape)}"
            )
        return (
            rows_to_input(array.tolist(), spec) if array.dtype == object else _checked(array, spec)
        )
    missing = [n for n in spec.names if n not in tensors]
    if missing:
        raise InvalidInput(
            f"missing input {missing[0]!r}",
            hint=f"send one tensor per feature: {', '.join(spec.names)}",
        )
    columns = [tensors[n].reshape(-1) for n in spec.names]
    lengths = {len(c) for c in columns}
    if len(lengths) != 1:
        raise InvalidInput(f"feature tensors differ in length: {sorted(lengths)}")
    if spec.all_numeric:
        return _checked(np.column_stack(_numeric(columns, spec.names)), spec)
    rows = np.empty((lengths.pop(), len(columns)), dtype=object)
    for j, column in enumerate(columns):
        rows[:, j] = column
    return rows_to_input(rows.tolist(), spec)


def _numeric(columns: list[np.ndarray], names: tuple[str, ...]) -> list[np.ndarray]:
    out = []
    for name, column in zip(names, columns, strict=True):
        try:
            out.append(column.astype(np.float64, copy=False))
        except (ValueError, TypeError):
            raise InvalidInput(
                f"input {name!r} must hold numbers, got {datatype_of(column)} values",
                hint="send numeric features as FP32/FP64/INT tensors",
            ) from None
    return out


def _checked(array: np.ndarray, spec: InputSpec) -> np.ndarray:
    if spec.width is not None and array.shape[1] != spec.width:
        raise InvalidInput(f"each row must have {spec.width} values, got {array.shape[1]}")
    if array.shape[0] == 0:
        raise InvalidInput("the input tensor has no rows")
    if not spec.all_numeric:
        return rows_to_input(array.tolist(), spec)
    return array.astype(spec.tensor_dtype, copy=False)


def datatype_of(array: np.ndarray) -> str:
    return BY_NAME.get(array.dtype.name, "BYTES")


def encode_v2(
    outputs: dict[str, np.ndarray], meta: dict[str, Any], binary: frozenset[str]
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when any output is binary."""
    described, blobs = [], []
    for name, array in outputs.items():
        datatype = datatype_of(array)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if name in binary:
            blob = to_bytes(array, datatype)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array.reshape(-1).tolist()
        described.append(entry)
    header = orjson.dumps({**meta, "outputs": described})
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


def to_bytes(array: np.ndarray, datatype: str) -> bytes:
    """Raw little-endian bytes of ``array``; BYTES as 4-byte length-prefixed elements."""
    if datatype != "BYTES":
        return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    parts = []
    for value in array.reshape(-1):
        raw = value if isinstance(value, bytes) else str(value).encode()
        parts.append(len(raw).to_bytes(4, "little") + raw)
    return b"".join(parts)
