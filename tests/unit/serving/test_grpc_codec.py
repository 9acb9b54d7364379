"""The OIP v2 gRPC codec: typed and raw contents, every datatype, and the errors it names."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cloche.errors import InvalidInput
from cloche.serving.inputs import InputSpec
from cloche.serving.protocols.grpc_gen.grpc_predict_v2_pb2 import (
    ModelInferRequest,
    ModelInferResponse,
)
from cloche.serving.protocols.v2_grpc import decode_grpc, encode_grpc
from cloche.signatures import FieldSpec, Signature

TENSOR = InputSpec.from_signature(Signature())  # any width, numeric
NAMED = InputSpec.from_signature(
    Signature(inputs=(FieldSpec("a", "float64"), FieldSpec("b", "float64")))
)
MIXED = InputSpec.from_signature(
    Signature(inputs=(FieldSpec("plan", "string"), FieldSpec("b", "float64")))
)
TEXT = InputSpec.from_signature(
    Signature(inputs=(FieldSpec("p", "string"), FieldSpec("q", "string")))
)
OUTS = frozenset({"predict", "probabilities"})

# Written from the standard, independently of the codec's own table.
FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
NUMPY = {
    "BOOL": "bool",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}


def _raw(values: Any, datatype: str) -> bytes:
    if datatype == "BYTES":
        items = [v.encode() for v in np.asarray(values, dtype=object).reshape(-1)]
        return b"".join(len(b).to_bytes(4, "little") + b for b in items)
    return np.asarray(values, dtype=NUMPY[datatype]).tobytes()


def request(*tensors: tuple[str, str, list[int], Any], raw: bool = False, **extra: Any):
    """A ModelInferRequest from (name, datatype, shape, values) tuples."""
    req = ModelInferRequest(model_name="m", **extra)
    for name, datatype, shape, values in tensors:
        tensor = req.inputs.add(name=name, datatype=datatype, shape=shape)
        if raw:
            req.raw_input_contents.append(_raw(values, datatype))
            continue
        flat = np.asarray(values, dtype=object).reshape(-1).tolist()
        if datatype == "BYTES":
            flat = [v.encode() for v in flat]
        getattr(tensor.contents, FIELD[datatype]).extend(flat)
    return req


def arrays(response: ModelInferResponse) -> dict[str, np.ndarray]:
    """A response's outputs as numpy arrays, as a client reads them (typed or raw)."""
    out = {}
    for i, tensor in enumerate(response.outputs):
        shape, datatype = list(tensor.shape), tensor.datatype
        if response.raw_output_contents:
            blob = response.raw_output_contents[i]
            if datatype == "BYTES":
                items, pos = [], 0
                while pos < len(blob):
                    n = int.from_bytes(blob[pos : pos + 4], "little")
                    items.append(blob[pos + 4 : pos + 4 + n].decode())
                    pos += 4 + n
                out[tensor.name] = np.array(items, dtype=object).reshape(shape)
            else:
                out[tensor.name] = np.frombuffer(blob, dtype=NUMPY[datatype]).reshape(shape)
        else:
            values = list(getattr(tensor.contents, FIELD[datatype]))
            if datatype == "BYTES":
                values = [v.decode() for v in values]
            out[tensor.name] = np.array(values, dtype=NUMPY.get(datatype, object)).reshape(shape)
    return out


# FP16 has no typed field: it travels raw only.
EVERY = [(d, raw) for d in FIELD for raw in (False, True)] + [("FP16", True)]


@pytest.mark.parametrize(("datatype", "raw"), EVERY, ids=lambda v: str(v).lower())
def test_every_datatype_decodes_to_rows(datatype: str, raw: bool) -> None:
    values = [["a", "b"], ["c", "d"]] if datatype == "BYTES" else [[1, 0], [0, 1]]
    spec = TEXT if datatype == "BYTES" else TENSOR
    req = decode_grpc(request(("x", datatype, [2, 2], values), raw=raw), spec, OUTS)
    assert req.inputs.tolist() == values
    assert req.outputs == OUTS and req.binary_outputs == frozenset() and req.request_id is None


def test_extreme_values_survive_typed_and_raw() -> None:
    wide = [[np.iinfo(np.int64).min, np.iinfo(np.int64).max]]
    for raw in (False, True):
        req = request(("x", "INT64", [1, 2], wide), raw=raw)
        spec = InputSpec((), (), None, True, "int64")
        assert decode_grpc(req, spec, OUTS).inputs.tolist() == wide


def test_one_tensor_per_feature_become_columns() -> None:
    req = request(
        ("b", "FP64", [2], [3.0, 4.0]),
        ("plan", "BYTES", [2, 1], [["x"], ["y"]]),
        id="req-1",
    )
    req.outputs.add(name="predict")
    decoded = decode_grpc(req, MIXED, OUTS)
    assert decoded.inputs.tolist() == [["x", 3.0], ["y", 4.0]]
    assert decoded.outputs == {"predict"} and decoded.request_id == "req-1"


def test_one_flat_row_is_accepted() -> None:
    req = request(("x", "FP32", [2], [1.5, 2.5]), raw=True)
    assert decode_grpc(req, NAMED, OUTS).inputs.tolist() == [[1.5, 2.5]]


def test_unknown_output_lists_the_available_ones() -> None:
    req = request(("x", "FP32", [1, 2], [[1, 2]]))
    req.outputs.add(name="logits")
    with pytest.raises(InvalidInput, match="unknown output 'logits'") as info:
        decode_grpc(req, NAMED, OUTS)
    assert "predict, probabilities" in (info.value.hint or "")


def tensor(name: str = "x", datatype: str = "FP32", shape: Any = (1, 2), **contents: Any):
    """One input tensor as a dict: ``contents`` are typed fields, e.g. fp32_contents=[1, 2]."""
    item: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(shape)}
    if contents:
        item["contents"] = contents
    return item


def bad(*tensors: dict[str, Any], raw: tuple[bytes, ...] = (), **params: str):
    req = ModelInferRequest(inputs=list(tensors), raw_input_contents=list(raw))
    for key, value in params.items():
        req.inputs[0].parameters[key].string_param = value
    return req


FP32_PAIR = {"fp32_contents": [1, 2]}
BAD = [
    (bad(), '"inputs" is empty'),
    (bad(tensor(name="", **FP32_PAIR)), r"inputs\[0\] needs a name"),
    (bad(tensor(shape=(1, 3), **FP32_PAIR)), r"input 'x': shape \[1, 3\] needs 3 values, "),
    (
        bad(tensor(), raw=(b"\0" * 4,)),
        r"input 'x': shape \[1, 2\] of FP32 needs 8 bytes, raw_input_contents says 4",
    ),
    (bad(tensor(), tensor("y"), raw=(b"\0" * 8,)), "raw_input_contents holds 1 tensors for 2"),
    (
        bad(tensor(fp64_contents=[1, 2])),
        "input 'x': .*fp32_contents holds 0 .*FP32 data goes in fp32_contents, not fp64_contents",
    ),
    (bad(tensor(**FP32_PAIR), raw=(b"\0" * 8,)), "input 'x' has contents while the request"),
    (bad(tensor(datatype="FP99", **FP32_PAIR)), "input 'x': unknown datatype 'FP99'"),
    (bad(tensor(shape=(1, -2), **FP32_PAIR)), "input 'x': shape must be a list of non-negative"),
    (bad(tensor(datatype="FP16", fp32_contents=[1, 2])), "input 'x': FP16 has no typed contents"),
    (bad(tensor(datatype="INT8", int_contents=[1, 300])), "input 'x': values must fit INT8"),
    (bad(tensor(datatype="UINT16", uint_contents=[1, 70_000])), "'x': values must fit UINT16"),
    (bad(tensor(**FP32_PAIR), tensor(**FP32_PAIR)), "input 'x' is sent twice"),
    (bad(tensor(shape=(100_000, 100_000))), "holds 10000000000 elements, over 50000000"),
    (
        bad(tensor(**FP32_PAIR), shared_memory_region="r"),
        "input 'x': shared memory is not supported",
    ),
    (
        bad(tensor(datatype="BYTES", shape=(2,)), raw=(b"\x04\0\0\0gold\x09\0",)),
        "input 'x': truncated BYTES element",
    ),
    (bad(tensor(shape=(1, 3), fp32_contents=[1, 2, 3])), "2 values, got 3"),
    (bad(tensor(shape=(2, 2, 1), fp32_contents=[1, 2, 3, 4])), "must be 2-D"),
    (
        bad(tensor("a", shape=(1,), fp32_contents=[1]), tensor("c", shape=(1,), fp32_contents=[1])),
        "missing input 'b'",
    ),
]


@pytest.mark.parametrize(("req", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_requests_name_the_input_and_the_problem(req: ModelInferRequest, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_grpc(req, NAMED, OUTS)


def test_unsupported_output_features_are_refused_by_name() -> None:
    req = request(("x", "FP32", [1, 2], [[1, 2]]))
    req.outputs.add(name="predict").parameters["classification"].int64_param = 2
    with pytest.raises(InvalidInput, match="output 'predict': classification outputs"):
        decode_grpc(req, NAMED, OUTS)


ENCODED = [
    np.array([True, False]),
    np.array([[-128, 127]], dtype=np.int8),
    np.array([-(2**15), 2**15 - 1], dtype=np.int16),
    np.array([-(2**31), 2**31 - 1], dtype=np.int32),
    np.array([-(2**63), 2**63 - 1], dtype=np.int64),
    np.array([0, 255], dtype=np.uint8),
    np.array([0, 2**16 - 1], dtype=np.uint16),
    np.array([0, 2**32 - 1], dtype=np.uint32),
    np.array([0, 2**64 - 1], dtype=np.uint64),
    np.array([[0.25, -1.5], [3.0, 1e30]], dtype=np.float32),
    np.array([[0.1, 1e300]]),
    np.array(["yes", "nö"]),
    np.array(["a", "b"], dtype=object),
]


@pytest.mark.parametrize("raw", [False, True], ids=["typed", "raw"])
@pytest.mark.parametrize("array", ENCODED, ids=lambda a: str(a.dtype))
def test_every_datatype_encodes_and_reads_back(array: np.ndarray, raw: bool) -> None:
    response = encode_grpc({"predict": array}, "churn", "2", "q1", raw=raw)
    assert (response.model_name, response.model_version, response.id) == ("churn", "2", "q1")
    assert bool(response.raw_output_contents) is raw
    (out,) = response.outputs
    assert list(out.shape) == list(array.shape)
    assert arrays(response)["predict"].tolist() == array.tolist()


def test_fp16_outputs_travel_raw_even_for_typed_requests() -> None:
    response = encode_grpc({"predict": np.array([0.5], dtype=np.float16)}, "m", "1", "", False)
    assert response.outputs[0].datatype == "FP16" and len(response.raw_output_contents) == 1
    assert arrays(response)["predict"].tolist() == [0.5]


def test_several_outputs_keep_their_order_and_types() -> None:
    outputs = {"predict": np.array(["no", "yes"]), "probabilities": np.array([[0.9, 0.1]] * 2)}
    for raw in (False, True):
        response = encode_grpc(outputs, "m", "1", "", raw)
        assert [(o.name, o.datatype) for o in response.outputs] == [
            ("predict", "BYTES"),
            ("probabilities", "FP64"),
        ]
        decoded = arrays(response)
        assert decoded["predict"].tolist() == ["no", "yes"]
        assert decoded["probabilities"].tolist() == [[0.9, 0.1]] * 2
