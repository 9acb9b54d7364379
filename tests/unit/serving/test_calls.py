import re

from cloche.serving.calls import request_id


def test_new_request_ids_are_unique_24_hex_digits_and_sane_client_ids_are_kept() -> None:
    made = [request_id(None) for _ in range(1000)] + [request_id("bad id with spaces")]
    assert len(set(made)) == len(made)
    assert all(re.fullmatch(r"[0-9a-f]{24}", rid) for rid in made)
    assert len({rid[:12] for rid in made}) == 1  # this worker's prefix, then a counter
    assert request_id("abc-123:x.y") == "abc-123:x.y"
