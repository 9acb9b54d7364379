"""Vendored assets: each committed file matches its recorded hash and ships its licence."""

from __future__ import annotations

import hashlib

import pytest

from cloche.vendor import URL_PREFIX, VENDOR_DIR, asset_url, manifest


@pytest.mark.parametrize("entry", manifest(), ids=lambda e: e.path)
def test_each_vendored_file_matches_its_hash_and_has_its_licence(entry: object) -> None:
    path = VENDOR_DIR / entry.path  # type: ignore[attr-defined]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.sha256  # type: ignore[attr-defined]
    assert (VENDOR_DIR / entry.license_file).stat().st_size > 0  # type: ignore[attr-defined]
    assert entry.source.startswith("https://registry.npmjs.org/")  # type: ignore[attr-defined]


def test_htmx_2_is_vendored_and_its_url_carries_the_hash() -> None:
    htmx = next(e for e in manifest() if e.package == "htmx.org")
    assert htmx.version.startswith("2.0.")
    assert asset_url(htmx.path) == f"{URL_PREFIX}/htmx/htmx.min.js?v={htmx.sha256[:12]}"


def test_an_unknown_path_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not a vendored file"):
        asset_url("htmx/../../config.py")
