"""Files over the HTTP transport: uploads that report progress, downloads verified into a cache."""

from __future__ import annotations

import hashlib
import io
import re
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloche import errors
from cloche.registry.entities import ModelVersion
from cloche.store.artifacts import Progress, sha256_file

CHUNK = 1024 * 1024
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
if TYPE_CHECKING:  # only the HTTP transport's calls use it, and they import it
    import httpx

StreamOpener = Callable[[str], AbstractContextManager["httpx.Response"]]


class MeteredFile(io.BufferedReader):
    """A file that reports each chunk read, i.e. sent, to the upload's progress callback."""

    def __init__(self, path: Path, report: Callable[[int], None]) -> None:
        super().__init__(io.FileIO(path, "rb"))
        self._report = report

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        if chunk:
            self._report(len(chunk))
        return chunk


def meter(total: int, progress: Progress | None) -> Callable[[int], None]:
    """A counter of bytes sent that calls ``progress(done, total)`` as they add up."""
    done = 0

    def report(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    return report


def open_dataset(path: str | Path) -> io.BufferedReader:
    if not Path(path).is_file():
        raise errors.InvalidDataset(f"dataset {path} does not exist or is not a file")
    return Path(path).open("rb")


def fetch_version(version: ModelVersion, *, cache_root: Path, open_stream: StreamOpener) -> Path:
    """A local folder with every file of ``version``, each checked against its recorded hash.

    Files already in the cache are reused when their hash still matches, so loading a version
    twice downloads it once; the folder is named by the version's combined hash.
    """
    if not SHA256_RE.match(version.sha256):
        raise errors.CorruptArtifact(f"the server sent an invalid hash for {version.ref}")
    folder = cache_root / version.sha256
    for rel, meta in version.files.items():
        target = folder.joinpath(*_safe_parts(rel))
        if not (target.is_file() and sha256_file(target) == meta["sha256"]):
            _download(version, rel, meta, target, open_stream)
    return folder


def _safe_parts(rel: str) -> list[str]:
    # The names come from the server: a hostile one must not write outside the cache.
    parts = rel.split("/")
    if rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in parts):
        raise errors.CorruptArtifact(f"the server sent an unsafe file name {rel!r}")
    return parts


def _download(
    version: ModelVersion, rel: str, meta: dict[str, Any], target: Path, open_stream: StreamOpener
) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # A private temporary name: two processes may fill the same cache at once.
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
    digest = hashlib.sha256()
    try:
        with open_stream(rel) as response, partial.open("wb") as out:
            for chunk in response.iter_bytes(CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != meta["sha256"]:
            raise errors.HashMismatch(
                f"artifact file {rel} of {version.ref} does not match its recorded sha256 "
                f"(expected {meta['sha256'][:12]}…, found {digest.hexdigest()[:12]}…); "
                "refusing to load it",
                hint="the file was changed on the server after upload; upload the model again",
                file=rel,
            )
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
