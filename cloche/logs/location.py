"""Where the payload log's compacted Parquet files and their profiles live: a server's own log
folder (today's layout) or a location replicas share (a folder or an object-store bucket).

The layout is the same in both, ``endpoint=E/date=D/hour=H/<segment>.parquet``, except that in
a shared location each replica writes under its own folder ``hour=H/replica=R/``: two replicas'
segment names may collide, and readers list every replica's files of the hours they ask for.
Listing goes hour by hour (a long range: date by date), so a window's reads follow the window,
not the whole log.

Writes are atomic on both: a folder gets a hidden temporary file then a rename, an object
store one PUT (an object appears whole or not at all). Readers skip hidden names, and a file
that disappears between listing and reading (retention by another replica) is skipped.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from cloche.store.layout import SHARED_LOG_FOLDER, SharedLog

HOUR = timedelta(hours=1)
# Listings per hour, then per date, up to these many; beyond, one listing of the endpoint.
MAX_HOUR_LISTINGS = 48
MAX_DATE_LISTINGS = 400


@dataclass(frozen=True)
class DataFile:
    """One compacted file as a listing found it (``size`` from the listing itself)."""

    path: str
    hour: datetime
    size: int


class LogLocation:
    """Compacted partitions under ``root`` on ``fs``; ``replica`` is where this server writes
    (None: the server's own folder, no replica level)."""

    def __init__(self, fs: Any, root: str, *, replica: str | None, label: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.replica = replica
        self.label = label  # what messages name: the folder or URL as configured
        protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
        self.is_local = "file" in protocols or "local" in protocols

    @classmethod
    def local(cls, root: Path) -> LogLocation:
        """A server's own log folder (``$CLOCHE_HOME/logs``)."""
        return cls(fsspec.filesystem("file"), str(root), replica=None, label=str(root))

    @classmethod
    def shared(
        cls,
        shared: SharedLog,
        *,
        replica: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> LogLocation:
        """The location replicas share; ``replica`` is needed only to write; ``options`` are
        more of its filesystem's (a bucket's client settings)."""
        options = dict(options or {})
        if shared.url.lower().startswith("s3://"):
            # Another replica's new files must show at the next listing: no listing cache.
            options["use_listings_cache"] = False
            if shared.endpoint_url:
                options["endpoint_url"] = shared.endpoint_url
        fs, path = fsspec.core.url_to_fs(shared.url, **options)
        return cls(fs, f"{path.rstrip('/')}/{SHARED_LOG_FOLDER}", replica=replica, label=shared.url)

    # --- where this server writes -------------------------------------------------------

    def hour_folder(self, endpoint: str, date: str, hour: str) -> str:
        folder = f"{self.root}/endpoint={endpoint}/date={date}/hour={hour}"
        return f"{folder}/replica={self.replica}" if self.replica else folder

    def endpoint_folder(self, endpoint: str) -> str:
        return f"{self.root}/endpoint={endpoint}"

    def put(self, path: str, data: bytes) -> None:
        """Write ``path`` whole or not at all."""
        parent, _, name = path.rpartition("/")
        if not self.is_local:
            self.fs.pipe_file(path, data)  # one PUT: the object appears whole
            return
        os.makedirs(parent, exist_ok=True)
        tmp = f"{parent}/.{name}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)

    def write_table(self, path: str, table: pa.Table) -> None:
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        self.put(path, sink.getvalue().to_pybytes())

    # --- reading -------------------------------------------------------------------------

    def get(self, path: str) -> bytes:
        data: bytes = self.fs.cat_file(path)
        return data

    def size(self, path: str) -> int:
        return int(self.fs.size(path))

    def read_table(self, path: str, columns: Sequence[str], schema: pa.Schema) -> pa.Table:
        """The file's ``columns``; an empty table if it vanished since it was listed."""
        try:
            if self.is_local:
                return pq.read_table(path, columns=list(columns), schema=schema)
            return pq.read_table(path, columns=list(columns), schema=schema, filesystem=self.fs)
        except FileNotFoundError:
            return schema.empty_table()

    def files(
        self, endpoint: str, since: datetime | None = None, until: datetime | None = None
    ) -> list[DataFile]:
        """An endpoint's compacted Parquet files (every replica's) whose hour overlaps
        [since, until), by path."""
        first = since.replace(minute=0, second=0, microsecond=0) if since is not None else None
        found = []
        for path, size in self._listing(endpoint, first, until):
            hour = hour_of(path)
            if hour is None or not path.endswith(".parquet"):
                continue
            if (first is not None and hour < first) or (until is not None and hour >= until):
                continue  # the whole hour is outside what was asked
            found.append(DataFile(path, hour, size))
        return sorted(found, key=lambda f: f.path)

    def _listing(
        self, endpoint: str, first: datetime | None, until: datetime | None
    ) -> Iterator[tuple[str, int]]:
        folder = self.endpoint_folder(endpoint)
        prefixes = [folder]
        if first is not None:
            last = (until or datetime.now(UTC) + timedelta(days=1)).astimezone(UTC)
            hours = int((last - first.astimezone(UTC)) / HOUR) + 1
            days = (last.date() - first.date()).days
            if 0 <= hours <= MAX_HOUR_LISTINGS:  # a window lists only its own hours
                starts = (first.astimezone(UTC) + n * HOUR for n in range(hours))
                prefixes = [f"{folder}/date={h:%Y-%m-%d}/hour={h:%H}" for h in starts]
            elif 0 <= days <= MAX_DATE_LISTINGS:  # a long range: one listing per date
                dates = (first.date() + timedelta(days=n) for n in range(days + 1))
                prefixes = [f"{folder}/date={d.isoformat()}" for d in dates]
        for prefix in prefixes:
            yield from self.find(prefix)

    def find(self, prefix: str) -> Iterator[tuple[str, int]]:
        """(path, size) of every visible file below ``prefix`` (none when it is missing)."""
        try:
            found = self.fs.find(prefix, detail=True)
        except FileNotFoundError:
            return
        for path, info in found.items():
            name = path.rpartition("/")[2]
            if name.startswith(".") or info.get("type") == "directory":
                continue  # a write in progress
            yield path, int(info.get("size") or 0)

    def endpoints(self) -> list[str]:
        """Endpoints with a folder here."""
        with contextlib.suppress(FileNotFoundError):
            names = [p.rstrip("/").rpartition("/")[2] for p in self.fs.ls(self.root, detail=False)]
            return sorted(n.removeprefix("endpoint=") for n in names if n.startswith("endpoint="))
        return []

    def remove(self, paths: Sequence[str]) -> None:
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(path)


def hour_of(path: str) -> datetime | None:
    """The hour a compacted file belongs to, from its ``date=``/``hour=`` folders."""
    date = hour = None
    for part in path.split("/"):
        if part.startswith("date="):
            date = part.removeprefix("date=")
        elif part.startswith("hour="):
            hour = part.removeprefix("hour=")
    if date is None or hour is None:
        return None
    try:
        return datetime.fromisoformat(f"{date}T{hour}:00:00+00:00")
    except ValueError:
        return None  # not a folder compaction wrote
