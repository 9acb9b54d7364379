"""What a monitor looks at: an endpoint's live traffic in a time window, profiled, and its
baseline.

A window's profile is merged from the profiles compaction wrote beside the payload log's
Parquet files (``log_profiles.py``); only the rows those do not cover are read and profiled
here: the slices a window edge cuts through, files without a profile for the current spec
(profiled now, and the profile saved for the next run), and segments not compacted yet.
With a shared log, the window's hours are read from every replica's files there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

from cloche.endpoints import service as endpoints
from cloche.logs.location import DataFile, LogLocation
from cloche.logs.service import log_locations, log_root, read_segments
from cloche.logs.table import SCHEMA
from cloche.monitoring.feature_profiles import kind_of_dtype
from cloche.monitoring.log_profiles import (
    READ_COLUMNS,
    TRAFFIC_KINDS,
    FileProfile,
    Piece,
    Spec,
    load_profile,
    profile_file,
    profile_rows,
    write_profile,
    write_spec,
)
from cloche.monitoring.profiles import Profile
from cloche.registry import service as registry
from cloche.registry.datasets import read_table
from cloche.registry.entities import ModelVersion
from cloche.registry.refs import parse_ref
from cloche.registry.service import resolve_version_row
from cloche.store.store import Store

log = logging.getLogger(__name__)
_TIME = SCHEMA.field("time").type
_READ = pa.schema([SCHEMA.field(name) for name in READ_COLUMNS])


@dataclass(frozen=True)
class Traffic:
    """One window of an endpoint's live traffic, profiled."""

    features: Profile  # the answered rows' features
    traffic: Profile  # every live request: latency_ms and status
    seconds: float
    sources: dict[str, int] = field(default_factory=dict)  # how the window was assembled

    @property
    def rows(self) -> int:
        return self.features.rows

    @property
    def requests(self) -> int:
        return self.traffic.rows


def primary_version(store: Store, endpoint: str) -> ModelVersion | None:
    """The version serving most of the endpoint's live traffic (its baseline is the reference)."""
    live = [d for d in endpoints.get_endpoint(store, endpoint).deployments if not d.shadow]
    if not live:
        return None
    top = max(live, key=lambda d: (d.traffic, d.version))
    return registry.get_version(store, top.ref)


def feature_kinds(version: ModelVersion) -> dict[str, str]:
    """Feature name -> "numeric" or "categorical", from the version's signature."""
    return {f.name: kind_of_dtype(f.dtype) for f in version.parsed_signature().inputs}


def baseline_table(store: Store, version: ModelVersion) -> pa.Table | None:
    """The version's baseline dataset, read from the artifact store (hash verified)."""
    with store.transaction() as session:  # the entity hides the internal artifact key
        meta = resolve_version_row(session, parse_ref(version.ref)).baseline
    if not meta or "key" not in meta:
        return None
    files = {meta["file"]: {"sha256": meta["sha256"], "size": meta["size"]}}
    folder = store.artifacts.local_dir(meta["key"], files)
    return read_table(folder / meta["file"])


def record_spec(store: Store, endpoint: str, kinds: dict[str, str]) -> Spec:
    """Tell compaction what to profile for ``endpoint`` (failing only costs speed)."""
    spec = Spec(dict(kinds))
    root = log_root(store.home)
    try:
        for location in log_locations(root, store.shared_log):  # where compaction profiles
            write_spec(root, endpoint, spec, location)
    except OSError as exc:
        log.warning("cannot record the profile spec of %s: %s", endpoint, exc)
    return spec


def read_traffic(
    store: Store, endpoint: str, start: datetime, end: datetime, kinds: dict[str, str]
) -> Traffic:
    """The window [start, end) of the endpoint's live traffic, profiled with ``kinds``."""
    root = log_root(store.home)
    spec = record_spec(store, endpoint, kinds)
    start_ms, end_ms = _ms(start), _ms(end)
    pieces: list[Piece] = []
    raw = [read_segments(root, endpoint).select(READ_COLUMNS)]
    sources = {"profiled_pieces": 0, "files_profiled_now": 0, "partial_slices": 0}
    for location in log_locations(root, store.shared_log):
        for data in location.files(endpoint, start, end):
            found, fresh = _file_profile(location, data, spec)
            sources["files_profiled_now"] += fresh
            inside, partial = found.cover(start_ms, end_ms)
            pieces += inside
            sources["profiled_pieces"] += len(inside)
            sources["partial_slices"] += len(partial)
            if partial:
                raw.append(_rows_in(location, data.path, partial))
    rows = pa.concat_tables(raw)
    rows = rows.filter(
        pc.and_(
            pc.greater_equal(rows["time"], pa.scalar(start, _TIME)),
            pc.less(rows["time"], pa.scalar(end, _TIME)),
        )
    )
    sources["rows_read"] = rows.num_rows
    from_rows = profile_rows(rows, spec)
    if from_rows is not None:
        pieces.append(from_rows)
    features, traffic = _merge(pieces, spec)
    return Traffic(features, traffic, (end - start).total_seconds(), sources)


def _ms(moment: datetime) -> int:
    return int(pa.scalar(moment, _TIME).value)


def _file_profile(location: LogLocation, data: DataFile, spec: Spec) -> tuple[FileProfile, bool]:
    """The file's profile, built now (and saved for the next run) when compaction has not
    profiled it for this spec: the file predates the spec, or the signature changed."""
    found = load_profile(data.path, spec, location, size=data.size)
    if found is not None:
        return found, False
    built = profile_file(data.path, spec, location)
    try:
        write_profile(data.path, built, location)
    except OSError as exc:
        log.warning("cannot save the profile of %s: %s", data.path, exc)
    return FileProfile.decode(built), True


def _rows_in(location: LogLocation, path: str, ranges: list[tuple[int, int]]) -> pa.Table:
    """The file's rows whose time lies in one of the [first_ms, last_ms] ranges."""
    table = location.read_table(path, READ_COLUMNS, _READ)
    ms = table["time"].cast(pa.int64())
    keep = None
    for first, last in ranges:
        one = pc.and_(pc.greater_equal(ms, first), pc.less_equal(ms, last))
        keep = one if keep is None else pc.or_(keep, one)
    return table.filter(keep)


def _merge(pieces: list[Piece], spec: Spec) -> tuple[Profile, Profile]:
    """Every piece merged, over empty profiles so a quiet window still has every feature."""
    empty = {name: pa.array([], pa.null()) for name in spec.kinds}
    features = Profile.from_table(pa.table(empty), dict(spec.kinds))
    traffic = Profile.from_table(
        pa.table({n: pa.array([], pa.null()) for n in TRAFFIC_KINDS}), TRAFFIC_KINDS
    )
    for piece in pieces:
        features, traffic = features.merge(piece.features), traffic.merge(piece.traffic)
    return features, traffic
