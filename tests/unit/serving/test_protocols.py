import numpy as np
import orjson
import pytest

from cloche.errors import BadRequest, InvalidInput
from cloche.serving.inputs import InputSpec
from cloche.serving.protocols.v1 import decode_v1, encode_v1
from cloche.serving.protocols.v2_rest import DATATYPES, decode_v2, encode_v2
from cloche.signatures import FieldSpec, Signature

NAMED = InputSpec.from_signature(
    Signature(inputs=(FieldSpec("a", "float64"), FieldSpec("b", "float64")))
)
MIXED = InputSpec.from_signature(
    Signature(inputs=(FieldSpec("plan", "string"), FieldSpec("b", "float64")))
)
OUTS = frozenset({"predict", "probabilities"})


def test_v1_round_trip() -> None:
    X, outputs = decode_v1(b'{"instances": [[1, 2], [3, 4]]}', NAMED)
    assert X.tolist() == [[1, 2], [3, 4]] and outputs == frozenset({"predict"})
    body = encode_v1({"predict": np.array([0, 1])}, {"model": "m", "version": 1})
    assert orjson.loads(body) == {"predictions": [0, 1], "model": "m", "version": 1}


def test_v1_probabilities_on_request() -> None:
    _, outputs = decode_v1(b'{"instances": [[1, 2]], "parameters": {"probabilities": true}}', NAMED)
    assert outputs == OUTS
    body = encode_v1({"predict": np.array(["no"]), "probabilities": np.array([[0.2, 0.8]])}, {})
    assert orjson.loads(body) == {"predictions": ["no"], "probabilities": [[0.2, 0.8]]}


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        (b"", BadRequest, "empty"),
        (b"{nope", BadRequest, "not valid JSON"),
        (b"[1, 2]", InvalidInput, '"instances" list'),
        (b'{"rows": []}', InvalidInput, '"instances" list'),
        (b'{"instances": []}', InvalidInput, "is empty"),
    ],
)
def test_v1_bad_bodies(body: bytes, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        decode_v1(body, NAMED)


def _v2(inputs, **extra) -> bytes:
    return orjson.dumps({"inputs": inputs, **extra})


def test_v2_one_2d_tensor_is_rows() -> None:
    body = _v2([{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}])
    req = decode_v2(body, None, NAMED, OUTS)
    assert req.inputs.tolist() == [[1, 2], [3, 4]] and req.outputs == OUTS


def test_v2_one_tensor_per_feature_become_columns() -> None:
    body = _v2(
        [
            {"name": "b", "shape": [2], "datatype": "FP64", "data": [3, 4]},
            {"name": "plan", "shape": [2, 1], "datatype": "BYTES", "data": ["x", "y"]},
        ],
        outputs=[{"name": "predict"}],
        id="req-1",
    )
    req = decode_v2(body, None, MIXED, OUTS)
    assert req.inputs.tolist() == [["x", 3.0], ["y", 4.0]]
    assert req.outputs == frozenset({"predict"}) and req.request_id == "req-1"


def test_v2_binary_tensor_round_trip() -> None:
    data = np.arange(6, dtype=np.float32).reshape(3, 2)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [3, 2],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": data.nbytes},
                }
            ],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        }
    )
    req = decode_v2(header + data.tobytes(), len(header), NAMED, OUTS)
    assert req.inputs.tolist() == data.tolist() and req.binary_outputs == {"probabilities"}
    proba = np.array([[0.25, 0.75]] * 3)
    body, length = encode_v2({"probabilities": proba}, {"id": "1"}, req.binary_outputs)
    assert length is not None
    meta = orjson.loads(body[:length])
    (out,) = meta["outputs"]
    assert out["parameters"]["binary_data_size"] == proba.nbytes and out["datatype"] == "FP64"
    assert np.frombuffer(body[length:], dtype="<f8").reshape(3, 2).tolist() == proba.tolist()


def test_v2_binary_bytes_elements_are_length_prefixed() -> None:
    raw = b"".join(len(s).to_bytes(4, "little") + s for s in (b"gold", b"free"))
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "plan",
                    "shape": [2],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw)},
                },
                {"name": "b", "shape": [2], "datatype": "FP64", "data": [1, 2]},
            ]
        }
    )
    req = decode_v2(header + raw, len(header), MIXED, OUTS)
    assert req.inputs.tolist() == [["gold", 1.0], ["free", 2.0]]


def test_v2_json_output_encoding() -> None:
    body, length = encode_v2({"predict": np.array([1, 0])}, {"model_name": "m"}, frozenset())
    assert length is None
    assert orjson.loads(body)["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [2], "data": [1, 0]}
    ]


@pytest.mark.parametrize("datatype", sorted(DATATYPES))
def test_v2_every_datatype_decodes(datatype: str) -> None:
    data = ["a", "b"] if datatype == "BYTES" else [1, 0]
    body = _v2([{"name": "x", "shape": [1, 2], "datatype": datatype, "data": data}])
    spec = (
        NAMED
        if datatype != "BYTES"
        else InputSpec.from_signature(
            Signature(inputs=(FieldSpec("p", "string"), FieldSpec("q", "string")))
        )
    )
    assert decode_v2(body, None, spec, OUTS).inputs.shape == (1, 2)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([], '"inputs" is empty'),
        ([{"shape": [1, 2], "datatype": "FP32", "data": [1, 2]}], "needs a name"),
        ([{"name": "x", "shape": [1, 2], "datatype": "FP99", "data": [1, 2]}], "unknown datatype"),
        ([{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2]}], "needs 3 values"),
        ([{"name": "x", "shape": "1,2", "datatype": "FP32", "data": [1, 2]}], "shape must be"),
        ([{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": ["a", "b"]}], "FP32 values"),
        ([{"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2, 3]}], "needs 2 values"),
        (
            [
                {"name": "a", "shape": [1], "datatype": "FP32", "data": [1]},
                {"name": "c", "shape": [1], "datatype": "FP32", "data": [1]},
            ],
            "missing input 'b'",
        ),
        (
            [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}],
            "2 values, got 3",
        ),
        (
            [
                {
                    "name": "x",
                    "shape": [1, 2],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 8},
                }
            ],
            "runs past the end",
        ),
    ],
)
def test_v2_bad_requests_name_the_problem(inputs, message) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_v2(_v2(inputs), None, NAMED, OUTS)


def test_v2_unknown_output_lists_the_available_ones() -> None:
    body = _v2(
        [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}],
        outputs=[{"name": "logits"}],
    )
    with pytest.raises(InvalidInput, match="unknown output 'logits'") as info:
        decode_v2(body, None, NAMED, OUTS)
    assert "predict, probabilities" in (info.value.hint or "")


def test_v2_binary_size_must_match_the_shape() -> None:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [1, 2],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 4},
                }
            ]
        }
    )
    with pytest.raises(InvalidInput, match="needs 8 bytes"):
        decode_v2(header + b"\0" * 4, len(header), NAMED, OUTS)
