"""Payload-log retention: compacted hours older than a maximum age, then oldest first over a size.

Runs in the compaction child (logs/compact.py), under the compaction lock, right after closed
segments became partitions. The unit removed is an hour folder ``endpoint=/date=/hour=`` with
everything in it (Parquet files and their monitoring profiles), oldest hour first across
endpoints. Segments are never removed: the open one is being written, and closed ones are
compacted before retention runs. Nor is the current hour: compaction and edge uploads write
into it.

A shared log (logs/location.py) is pruned the same way, whole hours with every replica's files,
by one replica at a time: the one holding the retention lease (logs/shared.py). Pruning only
one's own files would leave a replica that went away (a pod's name changes at each restart)
holding its hours forever, and a size cap is about the whole log, which only one view of all of
it can apply oldest first.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq

from cloche.logs.location import LogLocation, hour_of

HOUR = timedelta(hours=1)


@dataclass
class Removed:
    """What a retention pass deleted (rows as the Parquet footers count them)."""

    files: int = 0
    bytes: int = 0
    rows: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def add(self, other: Removed) -> None:
        self.files, self.bytes = self.files + other.files, self.bytes + other.bytes
        self.rows += other.rows


@dataclass(frozen=True)
class Hour:
    start: datetime
    folder: str
    files: tuple[tuple[str, int], ...]  # (path, size)

    @property
    def size(self) -> int:
        return sum(size for _, size in self.files)


def apply_retention(
    root: Path | LogLocation,
    *,
    max_age: timedelta | None,
    max_bytes: int | None,
    now: datetime | None = None,
) -> Removed:
    """Delete hours older than ``max_age``, then the oldest until the log fits ``max_bytes``
    (a server's own log folder counts its segments too)."""
    now = now or datetime.now(UTC)
    location = root if isinstance(root, LogLocation) else LogLocation.local(root)
    current = now.replace(minute=0, second=0, microsecond=0)
    hours = sorted(_hours(location), key=lambda h: (h.start, h.folder))
    removed = Removed()
    kept: list[Hour] = []
    for hour in hours:
        if max_age is not None and hour.start + HOUR <= now - max_age and hour.start < current:
            _remove(location, hour, removed)
        else:
            kept.append(hour)
    if max_bytes is not None:
        segments = _segments_size(root) if isinstance(root, Path) else 0
        total = sum(h.size for h in kept) + segments
        for hour in kept:
            if total <= max_bytes or hour.start >= current:
                break
            total -= hour.size
            _remove(location, hour, removed)
    return removed


def _hours(location: LogLocation) -> list[Hour]:
    found: dict[str, list[tuple[str, int]]] = {}
    starts: dict[str, datetime] = {}
    for path, size in location.find(location.root):
        parts = path.split("/")
        at = next((i for i, p in enumerate(parts) if p.startswith("hour=")), None)
        start = hour_of(path)
        if at is None or start is None or not parts[at - 2].startswith("endpoint="):
            continue  # not a file compaction wrote: leave it alone
        folder = "/".join(parts[: at + 1])
        found.setdefault(folder, []).append((path, size))
        starts[folder] = start
    return [Hour(starts[folder], folder, tuple(files)) for folder, files in found.items()]


def _remove(location: LogLocation, hour: Hour, removed: Removed) -> None:
    for path, size in hour.files:
        if path.endswith(".parquet"):
            with contextlib.suppress(OSError, ValueError):  # a torn file goes, rows unknown
                removed.rows += _rows(location, path)
        removed.bytes += size
        removed.files += 1
    with contextlib.suppress(FileNotFoundError):
        location.fs.rm(hour.folder, recursive=True)
    if location.is_local:  # an object store has no empty folders to tidy
        date = Path(hour.folder).parent
        with contextlib.suppress(OSError):
            date.rmdir()  # only when empty


def _rows(location: LogLocation, path: str) -> int:
    if location.is_local:
        return int(pq.read_metadata(path).num_rows)
    return int(pq.read_metadata(path, filesystem=location.fs).num_rows)


def _segments_size(root: Path) -> int:
    folder = root / "segments"
    return sum(_size(p) for p in folder.iterdir()) if folder.is_dir() else 0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
