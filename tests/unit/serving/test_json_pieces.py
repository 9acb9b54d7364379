import json

import orjson
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from cloche.serving.protocols.json_pieces import loads_in_pieces

# Values chosen to fool a cutter: strings holding "],", nested rows, objects, empty rows.
cells = st.recursive(
    st.none()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.sampled_from(["],", "],[", '"]', "x"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "],"]), inner)
    ),
    max_leaves=6,
)
rows = st.lists(st.lists(cells, max_size=4) | cells, max_size=30)


@hypothesis_settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(rows=rows, extra=st.booleans(), spaced=st.booleans(), piece=st.integers(1, 40))
def test_pieces_parse_to_the_whole_or_decline(rows, extra, spaced, piece) -> None:
    payload = {"instances": rows, **({"parameters": {"probabilities": True}} if extra else {})}
    body = json.dumps(payload).encode() if spaced else orjson.dumps(payload)
    got = loads_in_pieces(body, piece_bytes=piece)
    assert got is None or got == orjson.loads(body)


def test_a_large_numeric_body_is_cut_and_parses_to_the_whole() -> None:
    body = orjson.dumps({"instances": [[0.5, 1, 2, 3]] * 10_000, "parameters": {"x": 1}})
    assert loads_in_pieces(body, piece_bytes=1000) == orjson.loads(body)


def test_bodies_it_cannot_cut_are_left_to_the_whole_parse() -> None:
    assert loads_in_pieces(b'{"inputs": []}') is None
    assert loads_in_pieces(b'{"instances": [[1], [2]], "instances": [[3]]}', 1) is None
    assert loads_in_pieces(b'{"instances": [[1], [2', 1) is None  # broken: the whole parse says
