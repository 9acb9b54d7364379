"""The artifact store: immutable, hashed files under one root (a folder or any fsspec URL).

Keys are built by cloche from validated names, and every key is still checked to stay under
the root. Files are hashed (sha256) while they are written and verified whenever they are read
back for loading; a mismatch names the file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec

from cloche.errors import ArtifactNotFound, Conflict, HashMismatch, InvalidInput

CHUNK = 1024 * 1024
Progress = Callable[[int, int], None]  # (bytes done, bytes total)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def combined_digest(files: dict[str, dict[str, Any]]) -> str:
    """One sha256 over every (relative path, file hash) pair, in path order."""
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(f"{rel}\0{files[rel]['sha256']}\n".encode())
    return digest.hexdigest()


def list_source_files(source: Path) -> dict[str, Path]:
    """The regular files under ``source`` (or ``source`` itself), by POSIX relative path.

    Symlinks are refused: a link could pull a file from outside the folder into the store.
    """
    if source.is_symlink():
        raise InvalidInput(f"{source} is a symbolic link; upload the file it points to")
    if source.is_file():
        return {source.name: source}
    if not source.is_dir():
        raise InvalidInput(f"{source} does not exist", hint="check the path you gave")
    found: dict[str, Path] = {}
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source).as_posix()
        if "__pycache__" in rel.split("/"):
            continue
        if path.is_symlink():
            raise InvalidInput(f"{path} is a symbolic link; folders must hold plain files only")
        if path.is_file():
            found[rel] = path
    if not found:
        raise InvalidInput(f"{source} is an empty folder", hint="upload the model file or folder")
    return found


def _safe_relpath(rel: str) -> str:
    parts = PurePosixPath(rel).parts
    if not parts or rel.startswith("/") or any(p in ("..", "") for p in parts) or "\\" in rel:
        raise InvalidInput(f"refusing unsafe artifact path {rel!r}")
    return "/".join(parts)


class ArtifactStore:
    """Write-once files under ``root`` (a local folder or an fsspec URL)."""

    def __init__(self, root: str, cache_dir: Path) -> None:
        self.fs, path = fsspec.core.url_to_fs(root)
        self.root = path.rstrip("/")
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        self.is_local = "file" in protocols
        self.cache_dir = cache_dir
        if self.is_local:
            Path(self.root).mkdir(mode=0o700, parents=True, exist_ok=True)

    def _path(self, key: str, rel: str = "") -> str:
        key = _safe_relpath(key)
        return f"{self.root}/{key}/{_safe_relpath(rel)}" if rel else f"{self.root}/{key}"

    def put(
        self, key: str, source: Path, *, progress: Progress | None = None
    ) -> dict[str, dict[str, Any]]:
        """Copy a file or folder under ``key``; return {relative path: {sha256, size}}."""
        files = list_source_files(source)
        if self.fs.exists(self._path(key)):
            raise Conflict(f"artifact {key} already exists; artifacts are immutable")
        total = sum(p.stat().st_size for p in files.values())
        done = 0
        manifest: dict[str, dict[str, Any]] = {}
        try:
            for rel, path in files.items():
                manifest[rel] = self._copy_in(path, self._path(key, rel))
                done += manifest[rel]["size"]
                if progress is not None:
                    progress(done, total)
        except BaseException:
            self.delete(key)
            raise
        return manifest

    def _copy_in(self, path: Path, target: str) -> dict[str, Any]:
        digest = hashlib.sha256()
        size = 0
        self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        with path.open("rb") as src, self.fs.open(target, "wb") as dst:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                dst.write(chunk)
        if self.is_local:
            os.chmod(target, stat.S_IRUSR)  # read-only, and the owner's only
        return {"sha256": digest.hexdigest(), "size": size}

    def local_dir(self, key: str, files: dict[str, dict[str, Any]]) -> Path:
        """A local folder holding ``key``'s files, each verified against its recorded hash."""
        folder = self.fetch_dir(key, files)
        self.verify(folder, files, key=key)
        return folder

    def fetch_dir(self, key: str, files: dict[str, dict[str, Any]]) -> Path:
        """A local folder holding ``key``'s files, downloaded if need be but NOT verified: the
        caller verifies (the model cache times the two apart)."""
        if self.is_local:
            return Path(self._path(key))
        folder = self.cache_dir / _safe_relpath(key)
        for rel in files:
            target = folder / rel
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                self._download(self._path(key, rel), target)
        return folder

    def _download(self, remote: str, target: Path) -> None:
        tmp = target.with_suffix(target.suffix + ".part")
        if not self.fs.exists(remote):
            raise ArtifactNotFound(f"artifact file {remote} is missing from the store")
        with self.fs.open(remote, "rb") as src, tmp.open("wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)
        tmp.replace(target)

    @staticmethod
    def verify(folder: Path, files: dict[str, dict[str, Any]], *, key: str) -> None:
        """Raise HashMismatch naming the first file whose content changed since upload."""
        for rel, meta in files.items():
            path = folder / rel
            if not path.is_file():
                raise ArtifactNotFound(
                    f"artifact file {rel} of {key} is missing from the store",
                    hint="the store was modified outside cloche; upload the model again",
                )
            actual = sha256_file(path)
            if actual != meta["sha256"]:
                raise HashMismatch(
                    f"artifact file {rel} of {key} does not match its recorded sha256 "
                    f"(expected {meta['sha256'][:12]}…, found {actual[:12]}…); refusing to load it",
                    hint="the file was changed after upload; upload the model again",
                    file=rel,
                )

    def open(self, key: str, rel: str) -> Any:
        return self.fs.open(self._path(key, rel), "rb")

    def delete(self, key: str) -> None:
        path = self._path(key)
        if self.is_local:
            for dirpath, _dirs, names in os.walk(path):
                for name in names:
                    os.chmod(os.path.join(dirpath, name), stat.S_IWUSR | stat.S_IRUSR)
            shutil.rmtree(path, ignore_errors=True)
        elif self.fs.exists(path):
            self.fs.rm(path, recursive=True)
        cached = self.cache_dir / _safe_relpath(key)
        if cached.exists():
            shutil.rmtree(cached, ignore_errors=True)
