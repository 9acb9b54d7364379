"""cloche's own wheel, built from the installed package with no network and no build backend.

A wheel is a zip of the package plus a ``.dist-info`` folder (PEP 427, PEP 376 RECORD). The
bundle installs its pinned closure with ``--no-deps``, so the METADATA names no dependencies.
Entries are written in path order with a fixed timestamp: the same sources give the same bytes,
so the hash in requirements.txt is stable across exports.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import cloche

NAME = "cloche"
TAG = "py3-none-any"
CONSOLE_SCRIPTS = {"cloche": "cloche.cli.launch:main"}
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold
SKIPPED_DIRS = frozenset({"__pycache__"})
SKIPPED_SUFFIXES = (".pyc", ".pyo")


def wheel_name(version: str = cloche.__version__) -> str:
    return f"{NAME}-{version}-{TAG}.whl"


def build_cloche_wheel(dest: Path) -> Path:
    """Write ``cloche-<version>-py3-none-any.whl`` of the installed cloche into ``dest``."""
    version = cloche.__version__
    package = Path(cloche.__file__).resolve().parent
    dist_info = f"{NAME}-{version}.dist-info"
    entries = [(f"{NAME}/{rel}", path.read_bytes()) for rel, path in _package_files(package)]
    entries += [
        (f"{dist_info}/METADATA", _metadata(version)),
        (f"{dist_info}/WHEEL", _wheel_file(version)),
        (f"{dist_info}/entry_points.txt", _entry_points()),
    ]
    record = "".join(f"{name},{record_hash(data)},{len(data)}\n" for name, data in entries)
    record += f"{dist_info}/RECORD,,\n"
    entries.append((f"{dist_info}/RECORD", record.encode()))
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / wheel_name(version)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return target


def _package_files(package: Path) -> list[tuple[str, Path]]:
    found = []
    for path in package.rglob("*"):
        rel = path.relative_to(package)
        if not path.is_file() or SKIPPED_DIRS.intersection(rel.parts):
            continue
        if path.suffix in SKIPPED_SUFFIXES:
            continue
        found.append((rel.as_posix(), path))
    return sorted(found)


def record_hash(data: bytes) -> str:
    """``sha256=<urlsafe base64, no padding>``, as RECORD files write digests."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode()}"


def _metadata(version: str) -> bytes:
    return (
        "Metadata-Version: 2.1\n"
        f"Name: {NAME}\n"
        f"Version: {version}\n"
        "Summary: Self-hosted model serving (edge bundle build; dependencies pinned by the "
        "bundle's requirements.txt)\n"
        "License: Apache-2.0\n"
        "Requires-Python: >=3.11\n"
    ).encode()


def _wheel_file(version: str) -> bytes:
    return (
        "Wheel-Version: 1.0\n"
        f"Generator: cloche-export ({version})\n"
        "Root-Is-Purelib: true\n"
        f"Tag: {TAG}\n"
    ).encode()


def _entry_points() -> bytes:
    lines = "".join(f"{name} = {target}\n" for name, target in CONSOLE_SCRIPTS.items())
    return f"[console_scripts]\n{lines}".encode()
