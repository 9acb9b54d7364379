"""The backup archive refuses what would land outside the store or does not match its manifest."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from cloche.errors import BackupInvalid
from cloche.store.archive import FORMAT, FORMAT_VERSION, ArchiveWriter, check_name, read_archive

MANIFEST = {"format": FORMAT, "format_version": FORMAT_VERSION, "schema_revision": "0007"}


def _good_archive(path: Path) -> Path:
    with path.open("wb") as out:
        writer = ArchiveWriter(out)
        body = b'{"id":1}\n'
        writer.add_stream("db/models.jsonl", io.BytesIO(body), len(body))
        writer.add_stream("artifacts/models/m/k/model.onnx", io.BytesIO(b"x" * 5000), 5000)
        writer.finish(MANIFEST)
    return path


def _raw_archive(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    """A tar.gz whose members are exactly ``members`` (what an attacker could hand over)."""
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def _file(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _manifest_for(members: dict[str, bytes]) -> bytes:
    import hashlib

    listed = {
        n: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for n, d in members.items()
    }
    return json.dumps({**MANIFEST, "members": listed}).encode()


def test_a_whole_archive_reads_back_into_staging_with_its_manifest(tmp_path: Path) -> None:
    archive = _good_archive(tmp_path / "b.tar.gz")
    manifest = read_archive(archive, tmp_path / "staging")
    assert manifest["schema_revision"] == "0007"
    assert set(manifest["members"]) == {"db/models.jsonl", "artifacts/models/m/k/model.onnx"}
    assert (tmp_path / "staging/artifacts/models/m/k/model.onnx").read_bytes() == b"x" * 5000
    assert (tmp_path / "staging/db/models.jsonl").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    "name",
    [
        "../escape.txt",
        "db/../../escape.txt",
        "/etc/cron.d/evil",
        "artifacts//double",
        "artifacts/./dot",
        "elsewhere/file",
        "artifacts\\windows",
    ],
)
def test_a_member_name_outside_the_store_is_refused(tmp_path: Path, name: str) -> None:
    data = b"payload"
    archive = _raw_archive(
        tmp_path / "evil.tar.gz",
        [(_file(name), data), (_file("manifest.json"), _manifest_for({name: data}))],
    )
    with pytest.raises(BackupInvalid, match="refusing archive member"):
        read_archive(archive, tmp_path / "staging")
    assert not (tmp_path / "escape.txt").exists()
    staged = list((tmp_path / "staging").rglob("*")) if (tmp_path / "staging").exists() else []
    assert [p for p in staged if p.is_file()] == []


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_links_are_refused_even_pointing_inside(tmp_path: Path, kind: bytes) -> None:
    archive = _raw_archive(
        tmp_path / "links.tar.gz",
        [
            (_link("artifacts/models/m/k/model.onnx", "/etc/passwd", kind), b""),
            (_file("manifest.json"), _manifest_for({})),
        ],
    )
    with pytest.raises(BackupInvalid, match="a link"):
        read_archive(archive, tmp_path / "staging")


def test_a_member_changed_after_backup_fails_its_hash(tmp_path: Path) -> None:
    good = {"db/models.jsonl": b'{"id":1}\n'}
    manifest = _manifest_for(good)
    archive = _raw_archive(
        tmp_path / "tampered.tar.gz",
        [(_file("db/models.jsonl"), b'{"id":2}\n'), (_file("manifest.json"), manifest)],
    )
    with pytest.raises(BackupInvalid, match="does not match the sha256"):
        read_archive(archive, tmp_path / "staging")


def test_a_member_added_after_backup_is_refused(tmp_path: Path) -> None:
    good = {"db/models.jsonl": b'{"id":1}\n'}
    archive = _raw_archive(
        tmp_path / "added.tar.gz",
        [
            (_file("db/models.jsonl"), good["db/models.jsonl"]),
            (_file("logs/segments/x.jsonl"), b"extra"),
            (_file("manifest.json"), _manifest_for(good)),
        ],
    )
    with pytest.raises(BackupInvalid, match="not in the manifest"):
        read_archive(archive, tmp_path / "staging")


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_a_truncated_archive_is_refused(tmp_path: Path, keep: float) -> None:
    whole = _good_archive(tmp_path / "b.tar.gz").read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole[: int(len(whole) * keep)])
    with pytest.raises(BackupInvalid, match=r"truncated|not a cloche backup"):
        read_archive(cut, tmp_path / "staging")


def test_an_archive_without_its_manifest_is_refused(tmp_path: Path) -> None:
    archive = _raw_archive(tmp_path / "bare.tar.gz", [(_file("db/models.jsonl"), b"{}\n")])
    with pytest.raises(BackupInvalid, match="no manifest"):
        read_archive(archive, tmp_path / "staging")


def test_a_file_that_is_not_an_archive_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(gzip.compress(b"not a tar at all" * 100))
    with pytest.raises(BackupInvalid):
        read_archive(junk, tmp_path / "staging")


def test_the_writer_refuses_unsafe_names_too() -> None:
    with pytest.raises(BackupInvalid):
        check_name("artifacts/../x")
    assert check_name("logs/segments/a.jsonl").parts[0] == "logs"
