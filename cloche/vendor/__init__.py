"""Third-party JS/CSS committed as files: their manifest and the URLs they are served at.

Everything the console and the API docs page load comes from here, so an air-gapped site (a
plant, the edge) gets the same pages as a connected one. ``vendored.toml`` records where each
file came from, its version, hash and licence; only the files it lists are ever served.
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
    """One committed third-party file, as recorded in ``vendored.toml``."""

    path: str  # relative to VENDOR_DIR, with forward slashes
    package: str
    version: str
    source: str
    sha256: str
    license: str  # SPDX id
    license_file: str

    @property
    def file(self) -> Path:
        return VENDOR_DIR / self.path


@cache
def _by_path() -> dict[str, VendoredFile]:
    with MANIFEST.open("rb") as f:
        tables = tomllib.load(f)["file"]
    return {table["path"]: VendoredFile(**table) for table in tables}


def manifest() -> list[VendoredFile]:
    """Every vendored file, in the manifest's order (parsed once)."""
    return list(_by_path().values())


def lookup(path: str) -> VendoredFile | None:
    """The manifest entry for ``path`` exactly as written there; None for any other string."""
    return _by_path().get(path)


def asset_url(path: str) -> str:
    """URL of a vendored file, versioned by its hash so browsers may cache it for good."""
    entry = lookup(path)
    if entry is None:
        raise ValueError(f"{path!r} is not a vendored file; vendored.toml lists the files")
    return f"{URL_PREFIX}/{entry.path}?v={entry.sha256[:12]}"
