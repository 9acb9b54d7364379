"""refuse_forwarded: an open data plane serves this machine, not requests a proxy relayed."""

from __future__ import annotations

import pytest

from cloche.errors import Forbidden
from cloche.serving.auth import refuse_forwarded


@pytest.mark.parametrize("header", [b"x-forwarded-for", b"forwarded", b"x-real-ip"])
def test_a_forwarded_request_is_refused_with_a_hint(header: bytes) -> None:
    with pytest.raises(Forbidden) as info:
        refuse_forwarded({b"host": b"127.0.0.1", header: b"203.0.113.9"})
    assert "CLOCHE_AUTH__REQUIRED=true" in (info.value.hint or "")


def test_a_direct_request_passes() -> None:
    refuse_forwarded({b"host": b"127.0.0.1", b"content-type": b"application/json"})
