"""The manifest module: the format constants, file entries, and a reader-safe import."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from cloche.export.manifest import BUNDLE_FORMAT, MANIFEST, file_entry, write_manifest


def test_write_manifest_lists_every_other_file_by_posix_path_with_hash_and_size(
    tmp_path: Path,
) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.onnx").write_bytes(b"\x08\x07onnx")
    (tmp_path / "README.md").write_text("hello")
    (tmp_path / MANIFEST).write_text("{}")  # an older manifest is never listed in itself

    path = write_manifest(tmp_path, {"bundle_format": BUNDLE_FORMAT, "files": "replaced"})

    written = json.loads(path.read_text())
    assert path == tmp_path / MANIFEST and BUNDLE_FORMAT == 1
    assert list(written["files"]) == ["README.md", "model/model.onnx"]
    assert written["files"]["model/model.onnx"] == {
        "sha256": hashlib.sha256(b"\x08\x07onnx").hexdigest(),
        "size": 6,
    }
    assert path.read_text().startswith('{\n  "bundle_format": 1')  # indent 2


def test_file_entry_hashes_files_larger_than_one_read(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000  # over 2 MiB: several chunks
    (tmp_path / "big").write_bytes(data)
    assert file_entry(tmp_path / "big") == {
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }


def test_the_edge_server_can_import_it_without_numpy_pydantic_or_the_registry() -> None:
    code = (
        "import sys, cloche.export.manifest\n"
        "heavy = ('numpy', 'pydantic', 'sqlalchemy', 'pyarrow', 'packaging', 'cloche.registry')\n"
        "print([m for m in sys.modules if m.startswith(heavy)])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
