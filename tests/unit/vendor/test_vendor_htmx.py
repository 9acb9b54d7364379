"""htmx, the console's one script: version 2 and a URL carrying its hash (see test_vendor.py)."""

from __future__ import annotations

import pytest

from cloche.vendor import URL_PREFIX, asset_url, manifest


def test_htmx_2_is_vendored_and_its_url_carries_the_hash() -> None:
    htmx = next(e for e in manifest() if e.package == "htmx.org")
    assert htmx.version.startswith("2.0.")
    assert asset_url(htmx.path) == f"{URL_PREFIX}/htmx/htmx.min.js?v={htmx.sha256[:12]}"


def test_an_unknown_path_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not a vendored file"):
        asset_url("htmx/../../config.py")
