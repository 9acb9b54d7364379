import re

import numpy as np
import orjson

from cloche.serving.calls import MAX_LOGGED_BYTES, bounded_inputs, request_id


def test_new_request_ids_are_unique_24_hex_digits_and_sane_client_ids_are_kept() -> None:
    made = [request_id(None) for _ in range(1000)] + [request_id("bad id with spaces")]
    assert len(set(made)) == len(made)
    assert all(re.fullmatch(r"[0-9a-f]{24}", rid) for rid in made)
    assert len({rid[:12] for rid in made}) == 1  # this worker's prefix, then a counter
    assert request_id("abc-123:x.y") == "abc-123:x.y"


def test_failed_inputs_are_cut_to_about_4_kib_of_log() -> None:
    small = np.zeros((3, 4))
    assert bounded_inputs(small) == (small, "")
    tall, note = bounded_inputs(np.zeros((10_000, 4)))
    assert isinstance(tall, np.ndarray) and len(orjson.dumps(tall.tolist())) <= MAX_LOGGED_BYTES
    assert note == " (inputs cut to the first 42 of 10000 rows)"
    wide, note = bounded_inputs(np.zeros((2, 10_000)))
    assert wide == "inputs of shape [2, 10000] (float64)" and note == " (inputs not logged)"
    words = np.array([["x" * 1000, 1.0]] * 20, dtype=object)
    cut, note = bounded_inputs(words)
    assert isinstance(cut, np.ndarray) and 0 < len(cut) < 20
    assert len(orjson.dumps(cut.tolist())) <= MAX_LOGGED_BYTES
    text, note = bounded_inputs("é" * 10_000)
    assert isinstance(text, str) and len(text.encode()) <= MAX_LOGGED_BYTES
    assert note == " (inputs cut to 4 KiB)"
