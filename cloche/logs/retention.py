"""Payload-log retention: compacted hours older than a maximum age, then oldest first over a size.

Runs in the compaction child (logs/compact.py), under the compaction lock, right after closed
segments became partitions. The unit removed is an hour folder ``endpoint=/date=/hour=`` with
everything in it (Parquet files and their monitoring profiles), oldest hour first across
endpoints. Segments are never removed: the open one is being written, and closed ones are
compacted before retention runs. Nor is the current hour: compaction and edge uploads write
into it.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq

HOUR = timedelta(hours=1)


@dataclass
class Removed:
    """What a retention pass deleted (rows as the Parquet footers count them)."""

    files: int = 0
    bytes: int = 0
    rows: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Hour:
    start: datetime
    folder: Path
    files: tuple[Path, ...]

    @property
    def size(self) -> int:
        return sum(_size(f) for f in self.files)


def apply_retention(
    root: Path,
    *,
    max_age: timedelta | None,
    max_bytes: int | None,
    now: datetime | None = None,
) -> Removed:
    """Delete hours older than ``max_age``, then the oldest until the log fits ``max_bytes``."""
    now = now or datetime.now(UTC)
    current = now.replace(minute=0, second=0, microsecond=0)
    hours = sorted(_hours(root), key=lambda h: (h.start, str(h.folder)))
    removed = Removed()
    kept: list[Hour] = []
    for hour in hours:
        if max_age is not None and hour.start + HOUR <= now - max_age and hour.start < current:
            _remove(hour, removed)
        else:
            kept.append(hour)
    if max_bytes is not None:
        total = sum(h.size for h in kept) + _segments_size(root)
        for hour in kept:
            if total <= max_bytes or hour.start >= current:
                break
            total -= hour.size
            _remove(hour, removed)
    return removed


def _hours(root: Path) -> list[Hour]:
    found = []
    for folder in root.glob("endpoint=*/date=*/hour=*"):
        try:
            date = folder.parent.name.removeprefix("date=")
            hour = folder.name.removeprefix("hour=")
            start = datetime.fromisoformat(f"{date}T{hour}:00:00+00:00")
        except ValueError:
            continue  # not a folder compaction wrote: leave it alone
        found.append(Hour(start, folder, tuple(p for p in folder.iterdir() if p.is_file())))
    return found


def _remove(hour: Hour, removed: Removed) -> None:
    for path in hour.files:
        if path.suffix == ".parquet":
            with contextlib.suppress(OSError, ValueError):  # a torn file goes, rows unknown
                removed.rows += pq.read_metadata(path).num_rows
        removed.bytes += _size(path)
        removed.files += 1
    shutil.rmtree(hour.folder, ignore_errors=True)
    date = hour.folder.parent
    if not any(date.iterdir()):
        date.rmdir()


def _segments_size(root: Path) -> int:
    folder = root / "segments"
    return sum(_size(p) for p in folder.iterdir()) if folder.is_dir() else 0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
