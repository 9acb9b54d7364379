"""Hypothesis strategies for data-plane request bodies: V1 rows, OIP v2 tensors (JSON and binary).

Mostly well-formed, with a fair chance of each kind of mistake, for the fuzzer in
``test_serving_fuzz.py``. The served model takes four numeric features (``FEATURES``).
"""

from __future__ import annotations

import json
import math
import string
from typing import Any, Literal, TypeGuard

import numpy as np
from hypothesis import strategies as st

FEATURES = ["tenure", "spend", "visits", "age"]
GOOD_ROW = [0.1, 0.2, 0.3, 0.4]
FLOAT_WIDTHS: dict[str, Literal[16, 32, 64]] = {"FP16": 16, "FP32": 32, "FP64": 64}
FLOATS = list(FLOAT_WIDTHS)
NUMERIC = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
DATATYPES = [*NUMERIC, "BYTES"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: past 64 bits too
    | st.floats()  # NaN and infinities too: json.dumps writes them as bare NaN/Infinity
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=25,
)


def _finite_in(datatype: str) -> st.SearchStrategy[Any]:
    """Values a numeric ``datatype`` holds as finite numbers."""
    if datatype == "BOOL":
        return st.booleans()
    if datatype in FLOAT_WIDTHS:
        return st.floats(allow_nan=False, allow_infinity=False, width=FLOAT_WIDTHS[datatype])
    info = np.iinfo(NUMERIC[datatype])
    return st.integers(int(info.min), int(info.max))


# What JSON can carry into a float tensor that is not a finite value of its datatype: numpy reads
# these strings as NaN and infinities, and the big numbers overflow FP16 and FP32.
NON_FINITE_JSON = st.sampled_from(["nan", "NaN", "inf", "-Infinity", "1e999", 1e39, -1e300, 7e4])


def _values_in(datatype: str, *, finite: bool, json: bool) -> st.SearchStrategy[Any]:
    """Elements of a ``datatype`` tensor; with ``finite=False``, NaN and infinities among them."""
    if finite or datatype not in FLOAT_WIDTHS:
        return _finite_in(datatype)
    if json:
        return NON_FINITE_JSON | _finite_in(datatype)
    return st.floats(width=FLOAT_WIDTHS[datatype])


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` four times in five, else ``bad``: enough valid requests to reach the model."""
    return st.integers(0, 4).flatmap(lambda k: bad if k == 4 else good)


numbers = (
    st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**70), 2**70) | st.booleans()
)
# Anything a row's cell may hold: null is a missing value, which this model cannot take.
cells = mostly(
    numbers,
    st.none()
    | st.integers()  # past what a float holds, too
    | st.text(max_size=8)
    | st.lists(scalars, max_size=3)
    | st.dictionaries(st.text(max_size=4), scalars, max_size=2),
)
feature_names = st.sampled_from(FEATURES) | st.text(max_size=8)


v1_rows = (
    st.lists(st.lists(numbers, min_size=4, max_size=4), min_size=1, max_size=4)
    | st.lists(st.lists(cells, min_size=4, max_size=4), min_size=1, max_size=4)
    | st.lists(st.lists(cells, min_size=3, max_size=5), min_size=1, max_size=4)
    | st.lists(st.fixed_dictionaries({f: cells for f in FEATURES}), min_size=1, max_size=3)
    | st.lists(st.dictionaries(feature_names, cells, min_size=3, max_size=6), max_size=3)
    | json_values
)
v1_bodies = st.fixed_dictionaries(
    {"instances": v1_rows},
    optional={"parameters": json_values | st.fixed_dictionaries({"probabilities": st.booleans()})},
)

shapes = (
    st.lists(st.integers(-1, 5), max_size=3)
    | st.lists(st.integers(), max_size=3)
    | st.lists(st.booleans() | st.integers(0, 4), max_size=3)  # true is an int to Python
    | json_values
)
outputs = st.lists(
    st.fixed_dictionaries(
        {"name": mostly(st.sampled_from(["predict", "probabilities"]), json_values)},
        optional={
            "parameters": mostly(st.dictionaries(st.just("binary_data"), scalars), json_values)
        },
    ),
    max_size=3,
)
request_parameters = mostly(
    st.dictionaries(st.sampled_from(["binary_data_output", "x"]), scalars, max_size=2), json_values
)


@st.composite
def v2_tensors(draw: st.DrawFn) -> dict[str, Any]:
    """One input tensor, mostly self-consistent, with a fair chance of each kind of mistake."""
    name = draw(st.sampled_from(["input", "x", *FEATURES]) | st.text(max_size=6) | scalars)
    datatype = draw(st.sampled_from(DATATYPES) | st.text(max_size=5))
    shape = draw(st.lists(st.integers(0, 4), min_size=1, max_size=3) | shapes)
    count = math.prod(shape) if _is_shape(shape) else draw(st.integers(0, 6))
    finite = draw(mostly(st.just(True), st.just(False)))
    element = (
        _values_in(datatype, finite=finite, json=True)
        if datatype in NUMERIC
        else st.text(max_size=6)
    )
    size = draw(st.sampled_from([count, count, count, max(count - 1, 0), count + 1]))
    data = draw(st.lists(element, min_size=min(size, 64), max_size=min(size, 64)) | json_values)
    tensor = {"name": name, "shape": shape, "datatype": datatype, "data": data}
    for key in draw(st.sets(st.sampled_from(list(tensor)), max_size=1)):
        del tensor[key]  # sometimes a field is missing
    return tensor


def _is_shape(value: Any) -> TypeGuard[list[int]]:
    return (
        isinstance(value, list)
        and all(type(d) is int and 0 <= d <= 64 for d in value)
        and math.prod(value) <= 64
    )


@st.composite
def v2_matrices(draw: st.DrawFn, *, json: bool = True) -> list[dict[str, Any]]:
    """One well-formed [rows, 4] tensor of a numeric datatype, its data flat or nested.

    Its values are sometimes not finite: as JSON can write them (``json``) or as any float.
    """
    datatype = draw(st.sampled_from(FLOATS) | st.sampled_from(list(NUMERIC)))
    rows = draw(st.integers(1, 4))
    finite = draw(mostly(st.just(True), st.just(False)))
    element = _values_in(datatype, finite=finite, json=json)
    values = st.lists(element, min_size=4, max_size=4)
    data = draw(st.lists(values, min_size=rows, max_size=rows))
    flat = draw(st.booleans())
    return [
        {
            "name": draw(st.sampled_from(["input", "x"])),
            "shape": [rows, 4],
            "datatype": datatype,
            "data": [v for row in data for v in row] if flat else data,
        }
    ]


@st.composite
def v2_feature_columns(draw: st.DrawFn, *, json: bool = True) -> list[dict[str, Any]]:
    """One well-formed [rows] tensor per feature, each of its own numeric datatype."""
    rows = draw(st.integers(1, 4))
    finite = draw(mostly(st.just(True), st.just(False)))
    tensors = []
    for name in FEATURES:
        datatype = draw(st.sampled_from(FLOATS) | st.sampled_from(list(NUMERIC)))
        element = _values_in(datatype, finite=finite, json=json)
        data = draw(st.lists(element, min_size=rows, max_size=rows))
        tensors.append({"name": name, "shape": [rows], "datatype": datatype, "data": data})
    return draw(st.permutations(tensors))


v2_bodies = st.fixed_dictionaries(
    {"inputs": v2_matrices() | v2_feature_columns() | st.lists(v2_tensors(), max_size=5)},
    optional={"outputs": outputs, "parameters": request_parameters, "id": json_values},
)


@st.composite
def v2_loose_tensors(draw: st.DrawFn) -> list[dict[str, Any]]:
    """1-4 tensors of any datatype and a small shape, their data matching both."""
    tensors = []
    for _ in range(draw(st.integers(1, 4))):
        name = draw(st.sampled_from(["x", *FEATURES]))
        datatype = draw(st.sampled_from(DATATYPES))
        shape = draw(st.lists(st.integers(0, 4), min_size=1, max_size=3))
        finite = draw(mostly(st.just(True), st.just(False)))
        element = (
            _values_in(datatype, finite=finite, json=False)
            if datatype in NUMERIC
            else st.binary(max_size=6)
        )
        count = math.prod(shape)
        data = draw(st.lists(element, min_size=count, max_size=count))
        tensors.append({"name": name, "shape": shape, "datatype": datatype, "data": data})
    return tensors


def _raw(tensor: dict[str, Any]) -> bytes:
    """The binary tensor extension's bytes for a tensor's data."""
    if tensor["datatype"] == "BYTES":
        return b"".join(len(item).to_bytes(4, "little") + item for item in tensor["data"])
    dtype = np.dtype(NUMERIC[tensor["datatype"]]).newbyteorder("<")
    return np.asarray(tensor["data"]).astype(dtype).reshape(-1).tobytes()


@st.composite
def v2_binary_requests(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    """A JSON header, the binary data of some or all of its tensors, and the header's length.

    Often consistent; otherwise one flaw: a float tensor holds NaN or an infinity, or a blob,
    its ``binary_data_size``, the bytes after the last tensor or the
    Inference-Header-Content-Length disagrees with the rest.
    """
    well_formed = v2_matrices(json=False) | v2_feature_columns(json=False)
    tensors = draw(mostly(well_formed, v2_loose_tensors()))
    flaw = draw(st.sampled_from([None, None, None, "nan", "blob", "size", "tail", "length"]))
    blobs: list[bytes] = []
    for tensor in tensors:
        if tensor["datatype"] != "BYTES" and not draw(mostly(st.just(True), st.just(False))):
            continue  # this one stays JSON: a request may mix both
        if flaw == "nan" and tensor["datatype"] in FLOATS and np.size(tensor["data"]):
            bad = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
            tensor["data"] = np.asarray(tensor["data"], dtype=np.float64).reshape(-1)
            tensor["data"][draw(st.integers(0, len(tensor["data"]) - 1))] = bad
        blob, size = _raw(tensor), None
        if flaw == "blob" and not blobs:
            blob = draw(st.sampled_from([blob[:-1], blob + b"\x00", b""]))
        if flaw == "size" and not blobs:
            size = draw(st.sampled_from([len(blob) + 1, len(blob) - 1, -1, "8", 8.0, True]))
        del tensor["data"]
        tensor["parameters"] = {"binary_data_size": len(blob) if size is None else size}
        blobs.append(blob)
    header: dict[str, Any] = {"inputs": tensors}
    if draw(st.booleans()):
        header["outputs"] = [
            {"name": n, "parameters": {"binary_data": draw(st.booleans())}}
            for n in draw(st.sets(st.sampled_from(["predict", "probabilities"]), min_size=1))
        ]
    head = json.dumps(header).encode()
    tail = draw(st.binary(min_size=1, max_size=9)) if flaw == "tail" else b""
    body = head + b"".join(blobs) + tail
    length = str(len(head))
    if flaw == "length":
        length = draw(
            st.integers(-3, len(body) + 3).map(str)
            | st.text(string.ascii_letters + string.digits + "-+._", min_size=1, max_size=8)
        )
    return body, {"Inference-Header-Content-Length": length}
