"""The backup archive: a gzipped tar of regular files whose last member, ``manifest.json``,
records the sha256 and size of every other member.

Writing hashes each member as it streams into the tar. Reading never calls ``tarfile``'s
extraction: each member is checked (a regular file, a relative name of plain parts under one of
the known top folders) and copied to the staging folder by hand while it is hashed, and the
whole archive must match its manifest before anything leaves staging.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from cloche.errors import BackupInvalid

MANIFEST = "manifest.json"
FORMAT = "cloche-backup"
FORMAT_VERSION = 1
TOP_FOLDERS = ("db", "artifacts", "logs")
CHUNK = 1024 * 1024


class _Hashing(io.RawIOBase):
    """A reader that hashes what ``tarfile`` reads through it."""

    def __init__(self, source: IO[bytes]) -> None:
        self.source = source
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.digest.update(data)
        return data


class ArchiveWriter:
    """Members in, then the manifest; ``members`` maps each name to its sha256 and size."""

    def __init__(self, fileobj: IO[bytes]) -> None:
        # Closed by finish(): the manifest must be the last member written.
        self.tar = tarfile.open(fileobj=fileobj, mode="w:gz", compresslevel=6)  # noqa: SIM115
        self.members: dict[str, dict[str, Any]] = {}
        self.now = int(time.time())

    def _info(self, name: str, size: int) -> tarfile.TarInfo:
        check_name(name)
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o600, self.now
        return info

    def add_stream(self, name: str, source: IO[bytes], size: int) -> None:
        """Add ``size`` bytes read from ``source`` as ``name``."""
        reader = _Hashing(source)
        self.tar.addfile(self._info(name, size), reader)  # type: ignore[arg-type]
        self.members[name] = {"sha256": reader.digest.hexdigest(), "size": size}

    def add_file(self, name: str, path: Path) -> None:
        with path.open("rb") as fh:
            self.add_stream(name, fh, os.fstat(fh.fileno()).st_size)

    def finish(self, manifest: dict[str, Any]) -> None:
        body = json.dumps({**manifest, "members": self.members}, indent=1, sort_keys=True).encode()
        self.tar.addfile(self._info(MANIFEST, len(body)), io.BytesIO(body))
        self.tar.close()


def check_name(name: str) -> PurePosixPath:
    """``name`` as a safe relative path under a known top folder, or BackupInvalid."""
    parts = name.split("/")
    unsafe = (
        name.startswith("/")
        or "\\" in name
        or "\0" in name
        or any(part in ("", ".", "..") for part in parts)
    )
    if unsafe:
        raise BackupInvalid(f"refusing archive member {name!r}: not a plain relative path")
    if name != MANIFEST and (len(parts) < 2 or parts[0] not in TOP_FOLDERS):
        raise BackupInvalid(f"refusing archive member {name!r}: not part of a cloche backup")
    return PurePosixPath(name)


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    try:
        yield from tar
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise BackupInvalid(
            f"the backup archive is truncated or corrupt ({exc})",
            hint="copy the archive again from where it was kept",
        ) from None


def read_archive(path: Path, staging: Path) -> dict[str, Any]:
    """Copy every member of ``path`` under ``staging`` and return the verified manifest.

    Raises BackupInvalid for a link, device or folder member, an unsafe name, a duplicate, a
    truncated archive, a missing manifest, or any member whose hash or size differs.
    """
    seen: dict[str, dict[str, Any]] = {}
    manifest: dict[str, Any] | None = None
    try:
        tar = tarfile.open(path, mode="r:*")  # noqa: SIM115 (closed by the `with tar` below)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise BackupInvalid(f"{path} is not a cloche backup archive ({exc})") from None
    except OSError as exc:
        raise BackupInvalid(f"cannot read {path}: {exc.strerror or exc}") from None
    with tar:
        for member in _members(tar):
            if not member.isreg():
                kind = "link" if member.issym() or member.islnk() else "non-file entry"
                raise BackupInvalid(
                    f"refusing archive member {member.name!r}: a {kind}; "
                    "a cloche backup holds regular files only"
                )
            name = check_name(member.name).as_posix()
            if name in seen or (name == MANIFEST and manifest is not None):
                raise BackupInvalid(f"archive member {name!r} appears twice")
            source = tar.extractfile(member)
            assert source is not None  # a regular file always has content
            if name == MANIFEST:
                manifest = _parse_manifest(_read_all(source))
                continue
            seen[name] = _copy_out(source, staging / name)
    if manifest is None:
        raise BackupInvalid(
            f"{path} has no manifest: it is truncated or not a cloche backup",
            hint="copy the archive again from where it was kept",
        )
    _compare(manifest["members"], seen)
    return manifest


def _read_all(source: IO[bytes]) -> bytes:
    try:
        return source.read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise BackupInvalid(f"the backup archive is truncated or corrupt ({exc})") from None


def _copy_out(source: IO[bytes], target: Path) -> dict[str, Any]:
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    # O_EXCL: a name that reached here twice, or through a link, is refused by the OS as well.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        while True:
            try:
                chunk = source.read(CHUNK)
            except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
                raise BackupInvalid(f"the backup archive is truncated or corrupt ({exc})") from None
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    return {"sha256": digest.hexdigest(), "size": size}


def _parse_manifest(body: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(body)
    except ValueError:
        raise BackupInvalid("the backup's manifest is not valid JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupInvalid("the archive's manifest is not a cloche backup manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupInvalid(
            f"backup format version {manifest.get('format_version')!r} is not one this cloche "
            f"reads ({FORMAT_VERSION})",
            hint="restore it with the cloche version that wrote it, or a newer one",
        )
    if not isinstance(manifest.get("members"), dict):
        raise BackupInvalid("the backup's manifest lists no members")
    return manifest


def _compare(expected: dict[str, Any], found: dict[str, dict[str, Any]]) -> None:
    missing = sorted(set(expected) - set(found))
    if missing:
        raise BackupInvalid(
            f"the backup archive lacks {len(missing)} member(s) its manifest lists, e.g. "
            f"{missing[0]!r}: it is truncated",
            hint="copy the archive again from where it was kept",
        )
    extra = sorted(set(found) - set(expected))
    if extra:
        raise BackupInvalid(f"archive member {extra[0]!r} is not in the manifest: it was added")
    for name, meta in expected.items():
        if found[name] != {"sha256": meta.get("sha256"), "size": meta.get("size")}:
            raise BackupInvalid(
                f"archive member {name!r} does not match the sha256 in the manifest: the "
                "archive was changed or damaged",
                hint="restore from another copy of the backup",
            )
