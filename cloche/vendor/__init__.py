"""Vendored third-party JS/CSS: committed files with their version, hash and licence recorded.

``vendored.toml`` lists each file; pages link them through ``asset_url``, whose ``?v=`` (the
file's hash) lets browsers cache them for good and still see a new version at once.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

VENDOR_DIR = Path(__file__).resolve().parent
URL_PREFIX = "/static/vendor"
MANIFEST = VENDOR_DIR / "vendored.toml"


@dataclass(frozen=True)
class VendoredFile:
    path: str
    package: str
    version: str
    source: str
    sha256: str
    license: str
    license_file: str


@cache
def manifest() -> list[VendoredFile]:
    """The files ``vendored.toml`` lists, in its order."""
    with MANIFEST.open("rb") as handle:
        entries = tomllib.load(handle).get("file", [])
    return [VendoredFile(**entry) for entry in entries]


def asset_url(path: str) -> str:
    """The URL of vendored ``path``, versioned by its recorded hash."""
    for entry in manifest():
        if entry.path == path:
            return f"{URL_PREFIX}/{path}?v={entry.sha256[:12]}"
    raise ValueError(f"{path!r} is not a vendored file (see {MANIFEST.name})")
