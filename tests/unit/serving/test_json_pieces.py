import json

import orjson
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from cloche.serving.protocols.json_pieces import loads_in_pieces

# Values chosen to fool a cutter: strings holding "],", "}," and "data", nested rows, objects.
cells = st.recursive(
    st.none()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.sampled_from(["],", "],[", "},", '"]', ",", '"data": [', "x"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "],"]), inner)
    ),
    max_leaves=6,
)
rows = st.lists(st.lists(cells, max_size=4) | cells, max_size=30)
FUZZ = hypothesis_settings(max_examples=300, deadline=None, derandomize=True, database=None)


@FUZZ
@given(rows=rows, extra=st.booleans(), spaced=st.booleans(), piece=st.integers(1, 40))
def test_v1_pieces_parse_to_the_whole_or_decline(rows, extra, spaced, piece) -> None:
    payload = {"instances": rows, **({"parameters": {"probabilities": True}} if extra else {})}
    body = json.dumps(payload).encode() if spaced else orjson.dumps(payload)
    got = loads_in_pieces(body, piece_bytes=piece)
    assert got is None or got == orjson.loads(body)


@FUZZ
@given(data=rows, others=st.integers(0, 2), spaced=st.booleans(), piece=st.integers(1, 40))
def test_v2_pieces_parse_to_the_whole_or_decline(data, others, spaced, piece) -> None:
    tensor = {"name": "x", "shape": [len(data)], "datatype": "FP64", "data": data}
    other = {"name": "y", "shape": [1], "datatype": "FP64", "parameters": {"binary_data_size": 8}}
    payload = {"id": "],", "inputs": [*[other] * others, tensor, *[other] * others],
               "outputs": [{"name": "predict"}]}  # fmt: skip
    body = json.dumps(payload).encode() if spaced else orjson.dumps(payload)
    got = loads_in_pieces(body, piece_bytes=piece)
    assert got is None or got == orjson.loads(body)


@pytest.mark.parametrize(
    "payload",
    [
        {"instances": [[0.5, 1, 2, 3]] * 10_000, "parameters": {"x": 1}},
        {"instances": [{"a": 0.5, "b": "x"}] * 10_000},
        {"inputs": [{"name": "x", "shape": [40_000], "datatype": "FP64", "data": [0.5] * 40_000}]},
        {"inputs": [{"name": "x", "datatype": "FP64", "data": [[0.5, 1.0]] * 10_000}], "id": "1"},
    ],
    ids=["v1-rows", "v1-objects", "v2-flat", "v2-rows"],
)
def test_large_bodies_are_cut_and_parse_to_the_whole(payload) -> None:
    body = orjson.dumps(payload)
    assert loads_in_pieces(body, piece_bytes=1000) == orjson.loads(body)


def test_bodies_it_cannot_cut_are_left_to_the_whole_parse() -> None:
    assert loads_in_pieces(b'{"inputs": []}') is None
    assert loads_in_pieces(b'{"instances": [[1], [2]], "instances": [[3]]}', 1) is None
    assert loads_in_pieces(b'{"instances": [[1], [2', 1) is None  # broken: the whole parse says
    two = b'{"inputs": [{"data": [1, 2]}, {"data": [3]}]}'
    assert loads_in_pieces(two, 1) is None
