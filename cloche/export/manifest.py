"""The bundle's format contract: the format number, file names, and the manifest's writer.

``cloche serve DIR`` (cloche/edge/) imports this module in a bundle's lean runtime, so it uses
the standard library only.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BUNDLE_FORMAT = 1  # bump when a reader of format 1 would misread a new bundle
MANIFEST = "manifest.json"
MODEL_DIR = "model"
ONNX_FILE = "model.onnx"
REQUIREMENTS = "requirements.txt"
WHEELS_DIR = "wheels"
DOCKERFILE = "Dockerfile"
README = "README.md"
CHUNK = 1 << 20


def file_entry(path: Path) -> dict[str, Any]:
    """``{"sha256": ..., "size": ...}`` of one file, as the manifest lists it."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return {"sha256": digest.hexdigest(), "size": size}


def list_files(root: Path) -> dict[str, dict[str, Any]]:
    """Every file under ``root`` but the manifest, by relative POSIX path, in path order."""
    found = {
        path.relative_to(root).as_posix(): path
        for path in root.rglob("*")
        if path.is_file() and path.relative_to(root).as_posix() != MANIFEST
    }
    return {rel: file_entry(found[rel]) for rel in sorted(found)}


def utc_timestamp() -> str:
    """Now, as ISO-8601 UTC with a ``Z`` (second precision)."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def write_manifest(root: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest`` with ``files`` listing what ``root`` holds now; the manifest's path.

    Written last, after every other file, so that the hashes it records are final.
    """
    body = {**manifest, "files": list_files(root)}
    path = root / MANIFEST
    path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
