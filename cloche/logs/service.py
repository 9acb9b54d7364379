"""Reading and compacting the payload log (written by serving/payload_log.py).

Closed segments become Parquet partitions ``endpoint=/date=/hour=``, named after their segment so
that a compaction interrupted between writing and deleting simply rewrites the same files.
Reads union the Parquet partitions with the segments not yet compacted (open ones included),
so a prediction is readable as soon as it was answered.

With a shared log (``logs.shared``), compaction writes the partitions there, each replica under
its own id (logs/location.py), and reads union every replica's partitions with this server's
own folder (what it compacted before the log was shared) and its own segments: another
replica's requests are readable once that replica compacted them (``logs.publish_seconds``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel
from sqlalchemy import func, select

from cloche.durations import parse_duration
from cloche.errors import InvalidInput
from cloche.logs.location import LogLocation
from cloche.logs.table import SCHEMA, rows_to_table
from cloche.registry.refs import check_name
from cloche.serving.payload_log import META_COLUMNS, SEGMENT_SUFFIX, is_closed, read_segment
from cloche.store.layout import SharedLog, log_root
from cloche.store.store import Store
from cloche.store.tables import EdgeUploadRow

ENDPOINT_AT = META_COLUMNS.index("endpoint")
# An edge upload's segment is named with the time the central server received it (ms since the
# epoch), which compaction writes beside each row: the segment format itself has no room for it.
EDGE_SEGMENT = re.compile(r"^edge-(\d{1,15})-[0-9a-f]+$")


class LogStats(BaseModel):
    logged: int = 0  # every row in the log: served by the workers here, plus ``synced``
    dropped: int = 0
    workers: int = 0
    synced: int = 0  # of ``logged``, rows uploaded by edge sites (`cloche edge sync`)


MAX_ROWS = 100_000


def read_endpoint_log(
    store: Store,
    *,
    endpoint: str,
    since: str | datetime | None = "1h",
    until: str | datetime | None = None,
    limit: int = 1000,
) -> pa.Table:
    """The newest ``limit`` logged requests of an endpoint since ``since`` (e.g. "1h")."""
    check_name(endpoint)
    if not 1 <= limit <= MAX_ROWS:
        raise InvalidInput(f"limit must be 1-{MAX_ROWS}, got {limit}")
    return read_log(
        log_root(store.home),
        endpoint,
        since=parse_since(since),
        until=parse_since(until),
        limit=limit,
        shared=store.shared_log,
    )


def endpoint_log_stats(store: Store) -> LogStats:
    """Rows logged and rows that could not be logged, over every worker that served and every
    edge upload taken.

    The workers' counters (``read_stats``) only see what this server answered; rows synced from
    an edge site were never served here, so they are counted from the uploads' record instead.
    """
    total = read_stats(log_root(store.home))
    with store.transaction() as session:
        synced = session.scalar(select(func.coalesce(func.sum(EdgeUploadRow.rows), 0)))
    total.synced = int(synced or 0)
    total.logged += total.synced
    return total


def parse_since(value: str | datetime | None, *, now: datetime | None = None) -> datetime | None:
    """``"1h"``, ``"30m"``, ``"7d"`` or an ISO time, as an aware UTC datetime."""
    if value is None or isinstance(value, datetime):
        return value.astimezone(UTC) if isinstance(value, datetime) else None
    duration = parse_duration(value)
    if duration is not None:
        return (now or datetime.now(UTC)) - duration
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"cannot read the time {value!r}",
            hint="use a duration such as 30m, 1h, 7d or an ISO time",
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def edge_segment_name(staging: str, received_at: datetime) -> str:
    """The segment name of an edge upload received at ``received_at``."""
    return f"edge-{int(received_at.timestamp() * 1000)}-{staging}{SEGMENT_SUFFIX}"


def received_at(segment: Path) -> datetime | None:
    """When the central server received an edge upload's segment; None for its own rows."""
    found = EDGE_SEGMENT.match(segment.stem)
    return datetime.fromtimestamp(int(found.group(1)) / 1000, UTC) if found else None


def compact(
    root: Path, target: LogLocation | None = None, *, written: list[str] | None = None
) -> int:
    """Move every closed segment into Parquet partitions; return how many rows moved.

    The partitions go to ``target`` (default: ``root`` itself, today's layout); the paths
    written are added to ``written``. One compaction at a time per log root (workers of
    several servers may ask at once); a compaction already running makes this one return 0.
    """
    with compaction_lock(root) as held:
        if not held:
            return 0
        return _compact_segments(root, target or LogLocation.local(root), written)


@contextlib.contextmanager
def compaction_lock(root: Path) -> Iterator[bool]:
    """Hold the log root's compaction lock if it is free: True, or False if another holds it."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / "compact.lock").open("ab") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True


def has_closed_segments(root: Path) -> bool:
    """Whether compaction would find anything to do (a cheap check before starting it)."""
    return any(is_closed(p) for p in (root / "segments").glob(f"*{SEGMENT_SUFFIX}"))


def _compact_segments(root: Path, target: LogLocation, written: list[str] | None) -> int:
    moved = 0
    for segment in sorted((root / "segments").glob(f"*{SEGMENT_SUFFIX}")):
        if not is_closed(segment):
            continue
        table = rows_to_table(list(read_segment(segment)), received_at=received_at(segment))
        if table.num_rows:
            paths = _write_partitions(target, table, segment.stem)
            if written is not None:
                written += paths
        moved += table.num_rows
        # Only once every partition is written (atomically): a compaction killed before this
        # line is redone by the next one, rewriting the same files.
        segment.unlink()
        segment.with_suffix(".lock").unlink(missing_ok=True)
    return moved


def _write_partitions(target: LogLocation, table: pa.Table, stem: str) -> list[str]:
    hours = pc.strftime(table["time"], format="%Y-%m-%d %H")
    keys = pc.binary_join_element_wise(table["endpoint"], hours, "\x00")
    paths = []
    for key in pc.unique(keys).to_pylist():
        endpoint, stamp = key.split("\x00")
        date, hour = stamp.split(" ")
        path = f"{target.hour_folder(endpoint, date, hour)}/{stem}.parquet"
        target.write_table(path, table.filter(pc.equal(keys, key)))
        paths.append(path)
    return paths


def log_locations(root: Path, shared: SharedLog | None = None) -> list[LogLocation]:
    """Where compacted partitions are read from: the server's own folder, then the shared
    location (every replica's files) when there is one."""
    own = [LogLocation.local(root)]
    return own if shared is None else [*own, LogLocation.shared(shared)]


def read_log(
    root: Path,
    endpoint: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
    columns: Sequence[str] | None = None,
    shared: SharedLog | None = None,
) -> pa.Table:
    """An endpoint's logged requests, oldest first, between ``since`` and ``until``; only
    ``columns`` (and ``time``) when given: Parquet then skips the large inputs and outputs.
    With ``shared``, every replica's compacted requests are read too."""
    schema = SCHEMA if columns is None else _projection(columns)
    parts = [
        _read_partitions(location, endpoint, since, until, schema)
        for location in log_locations(root, shared)
    ]
    table = pa.concat_tables([*parts, read_segments(root, endpoint).select(schema.names)])
    if since is not None:
        table = table.filter(
            pc.greater_equal(table["time"], pa.scalar(since, SCHEMA.field("time").type))
        )
    if until is not None:
        table = table.filter(pc.less(table["time"], pa.scalar(until, SCHEMA.field("time").type)))
    table = table.sort_by([("time", "ascending")])
    if limit is not None and table.num_rows > limit:
        table = table.slice(table.num_rows - limit)
    return table


def read_segments(root: Path, endpoint: str) -> pa.Table:
    """An endpoint's rows in the segments not compacted yet (open ones included)."""
    parts = [SCHEMA.empty_table()]
    for segment in sorted((root / "segments").glob(f"*{SEGMENT_SUFFIX}")):
        found = [line for line in read_segment(segment) if line[0][ENDPOINT_AT] == endpoint]
        if found:
            parts.append(rows_to_table(found, received_at=received_at(segment)))
    return pa.concat_tables(parts)


def partition_files(
    root: Path, endpoint: str, since: datetime | None = None, until: datetime | None = None
) -> list[Path]:
    """An endpoint's compacted Parquet files in ``root`` whose hour overlaps [since, until)."""
    return [Path(f.path) for f in LogLocation.local(root).files(endpoint, since, until)]


def _projection(columns: Sequence[str]) -> pa.Schema:
    wanted = set(columns) | {"time"}
    unknown = wanted - set(SCHEMA.names)
    if unknown:
        raise InvalidInput(f"the payload log has no column {sorted(unknown)[0]!r}")
    return pa.schema([field for field in SCHEMA if field.name in wanted])


def _read_partitions(
    location: LogLocation,
    endpoint: str,
    since: datetime | None,
    until: datetime | None,
    schema: pa.Schema = SCHEMA,
) -> pa.Table:
    files = location.files(endpoint, since, until)
    tables = [location.read_table(f.path, schema.names, schema) for f in files]
    return pa.concat_tables(tables) if tables else schema.empty_table()


def write_stats(root: Path, stats: dict[str, Any]) -> None:
    """A worker's counters, for `cloche logs` to add up (written off the hot path)."""
    folder = root / "stats"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{stats['pid']}.json.tmp"
    tmp.write_text(json.dumps(stats))
    tmp.replace(folder / f"{stats['pid']}.json")


def read_stats(root: Path) -> LogStats:
    total = LogStats()
    for path in (root / "stats").glob("*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        total.logged += int(data.get("logged", 0))
        total.dropped += int(data.get("dropped", 0))
        total.workers += 1
    return total


def rows(table: pa.Table) -> list[dict[str, Any]]:
    """Log rows as JSON-ready dicts (inputs and outputs parsed back from their JSON)."""
    out = []
    for row in table.to_pylist():
        row["time"] = row["time"].isoformat()
        if row.get("received_at") is not None:
            row["received_at"] = row["received_at"].isoformat()
        for key in ("inputs", "outputs"):
            if isinstance(row[key], str):
                # A failed request's raw body stays as text.
                with contextlib.suppress(ValueError):
                    row[key] = json.loads(row[key])
        out.append(row)
    return out


class ShadowAgreement(BaseModel):
    """How often a shadow deployment's answers matched the live answers to the same requests."""

    shadow: str
    compared: int
    agreed: int
    rate: float | None


def shadow_agreement(
    store: Store, *, endpoint: str, since: str | datetime | None = "24h"
) -> list[ShadowAgreement]:
    """Per shadow deployment: answered requests also answered live, and the share that agreed."""
    table = read_endpoint_log(store, endpoint=endpoint, since=since, limit=MAX_ROWS)
    # An explanation is no answer to compare, even under a request id a prediction also used.
    explained = pc.fill_null(pc.equal(table["kind"], "explain"), False)
    ok = table.filter(pc.and_(pc.equal(table["status"], 200), pc.invert(explained)))
    live: dict[str, Any] = {}
    shadows: dict[str, list[tuple[str, Any]]] = {}
    for row in ok.select(["request_id", "model", "version", "shadow", "outputs"]).to_pylist():
        predicted = json.loads(row["outputs"]).get("predict") if row["outputs"] else None
        if row["shadow"]:
            ref = f"{row['model']}:{row['version']}"
            shadows.setdefault(ref, []).append((row["request_id"], predicted))
        else:
            live[row["request_id"]] = predicted
    out = []
    for ref, answers in sorted(shadows.items()):
        pairs = [(mine, live[rid]) for rid, mine in answers if rid in live]
        agreed = sum(1 for mine, theirs in pairs if _same(mine, theirs))
        rate = agreed / len(pairs) if pairs else None
        out.append(ShadowAgreement(shadow=ref, compared=len(pairs), agreed=agreed, rate=rate))
    return out


def _same(a: Any, b: Any) -> bool:
    if a == b:
        return True
    try:  # regressors: equal up to float noise
        return bool(np.allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float)))
    except (TypeError, ValueError):
        return False
