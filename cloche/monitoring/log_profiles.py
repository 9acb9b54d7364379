"""Profiles of the compacted payload log, so that a monitor run merges sketches instead of
parsing every logged row: its cost grows with windows and features, not with traffic.

Beside each Parquet file of a partition (``endpoint=/date=/hour=/<segment>.parquet``) sits
``_profile-<segment>.bin``: per time slice of ``SLICE_S`` seconds, the profile of the features
of its answered live predictions and the profile of its live traffic (latency and status of
every request, failed ones included), plus the same two for the whole file. Each piece records
the times of its first and last row, so a window takes a piece whole when both lie inside it,
and re-reads the rows only of the (at most two) slices its edges cut through.

What is profiled (feature names in the model's input order, and their kinds) is the
endpoint's ``Spec``, which the monitor writes beside the partitions (``_profile-spec.json``)
from its primary version's signature: the compaction child has no store to read signatures
from. Profiles built under another spec (a redeploy changed the signature) are rebuilt; a file
with no usable profile is profiled on the spot by whoever needs it (see ``window.py``).
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from cloche.logs.location import LogLocation
from cloche.logs.table import SCHEMA
from cloche.monitoring.columns import feature_columns, live_rows
from cloche.monitoring.profiles import Profile

SLICE_S = 300
SPEC_FILE = "_profile-spec.json"
PREFIX = "_profile-"
SUFFIX = ".bin"
# The leading underscore keeps these files out of what Arrow, pandas and Spark read as the
# log's Parquet dataset (they skip names starting with "_" or ".").
_MAGIC = b"CLLOGPROF"
_VERSION = 1
# How far back compaction (re)profiles files, e.g. after a redeploy changed the spec; older
# windows are profiled by the monitor run that asks for them.
BACKFILL = timedelta(days=8)
# The log columns profiling reads (never outputs: large, and not profiled).
READ_COLUMNS = ["time", "shadow", "kind", "status", "latency_ms", "inputs"]
TRAFFIC_KINDS = {"latency_ms": "numeric", "status": "categorical"}
_READ_SCHEMA = pa.schema([SCHEMA.field(name) for name in READ_COLUMNS])
_LOCAL = LogLocation.local(Path("/"))  # absolute local paths, for callers holding a Path
P = TypeVar("P", Path, str)


@dataclass(frozen=True)
class Spec:
    """What to profile: feature name -> "numeric" | "categorical", in the model's input order
    (positional rows in the log are matched to names by that order)."""

    kinds: Mapping[str, str]

    @property
    def key(self) -> str:
        text = json.dumps([list(self.kinds), [self.kinds[n] for n in self.kinds]])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(eq=False)
class Piece:
    """The profiles of a run of log rows whose times lie in [first_ms, last_ms]."""

    first_ms: int
    last_ms: int
    features: Profile  # the answered live rows' features
    traffic: Profile  # every live request: latency_ms (numeric) and status (categorical)

    def merge(self, other: Piece) -> Piece:
        return Piece(
            min(self.first_ms, other.first_ms),
            max(self.last_ms, other.last_ms),
            self.features.merge(other.features),
            self.traffic.merge(other.traffic),
        )


def profile_rows(table: pa.Table, spec: Spec) -> Piece | None:
    """Profile log rows (the payload log's schema, any extra columns ignored); None when none
    of them is a live request (shadow answers and explanations are not profiled)."""
    table = live_rows(table)
    if not table.num_rows:
        return None
    traffic = pa.table(
        {"latency_ms": table["latency_ms"], "status": pc.cast(table["status"], pa.string())}
    )
    answered = table.filter(pc.equal(table["status"], 200))
    names = list(spec.kinds)
    features = feature_columns(answered["inputs"], names)
    times = pc.min_max(table["time"].cast(pa.int64()))
    return Piece(
        first_ms=times["min"].as_py(),
        last_ms=times["max"].as_py(),
        features=Profile.from_table(features, dict(spec.kinds)),
        traffic=Profile.from_table(traffic, TRAFFIC_KINDS),
    )


def profile_path(data_file: P) -> P:
    if isinstance(data_file, Path):
        return data_file.with_name(f"{PREFIX}{data_file.stem}{SUFFIX}")
    folder, _, name = data_file.rpartition("/")
    return f"{folder}/{PREFIX}{name.removesuffix('.parquet')}{SUFFIX}"


def profile_file(data_file: Path | str, spec: Spec, location: LogLocation | None = None) -> bytes:
    """The profile file's bytes for one compacted Parquet file: one piece per slice."""
    place = location or _LOCAL
    path = str(data_file)
    table = place.read_table(path, READ_COLUMNS, _READ_SCHEMA).sort_by("time")
    pieces = []
    if table.num_rows:
        slice_ids = pc.divide(table["time"].cast(pa.int64()), SLICE_S * 1000)
        bounds = _runs(slice_ids)
        for start, stop in bounds:
            piece = profile_rows(table.slice(start, stop - start), spec)
            if piece is not None:
                pieces.append(piece)
    return encode(spec, place.size(path), pieces)


def _runs(values: pa.ChunkedArray) -> list[tuple[int, int]]:
    """[start, stop) of each run of equal values in a sorted column."""
    array = values.combine_chunks().to_numpy(zero_copy_only=False)
    if not len(array):
        return []
    cuts = [0, *(int(i) + 1 for i in (array[1:] != array[:-1]).nonzero()[0]), len(array)]
    return list(itertools.pairwise(cuts))


def write_profile(data_file: Path | str, data: bytes, location: LogLocation | None = None) -> None:
    """Atomically, so a reader never sees half a profile (two writers give the same bytes)."""
    (location or _LOCAL).put(profile_path(str(data_file)), data)


# --- the file format: magic, a JSON header, then each piece's two serialised profiles --------


def encode(spec: Spec, source_size: int, pieces: list[Piece]) -> bytes:
    whole = None
    for piece in pieces:
        whole = piece if whole is None else whole.merge(piece)
    blobs: list[bytes] = []
    offset = 0

    def entry(piece: Piece) -> dict[str, Any]:
        nonlocal offset
        spans = []
        for blob in (piece.features.to_bytes(), piece.traffic.to_bytes()):
            blobs.append(blob)
            spans.append([offset, len(blob)])
            offset += len(blob)
        return {"first_ms": piece.first_ms, "last_ms": piece.last_ms, "blobs": spans}

    header = {
        "version": _VERSION,
        "spec": spec.key,
        "source_size": source_size,
        "slice_s": SLICE_S,
        "whole": entry(whole) if whole is not None else None,
        "slices": [entry(p) for p in pieces],
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    return _MAGIC + struct.pack("<I", len(head)) + head + b"".join(blobs)


@dataclass(frozen=True)
class FileProfile:
    """A decoded header; pieces are deserialised only when asked for."""

    header: dict[str, Any]
    body: bytes

    @classmethod
    def decode(cls, data: bytes) -> FileProfile:
        if not data.startswith(_MAGIC):
            raise ValueError("not a payload-log profile")
        (size,) = struct.unpack_from("<I", data, len(_MAGIC))
        start = len(_MAGIC) + 4
        header = json.loads(data[start : start + size])
        if header.get("version") != _VERSION:
            raise ValueError(f"unsupported log profile version {header.get('version')!r}")
        return cls(header, data[start + size :])

    def piece(self, entry: dict[str, Any]) -> Piece:
        (f_at, f_len), (t_at, t_len) = entry["blobs"]
        return Piece(
            entry["first_ms"],
            entry["last_ms"],
            Profile.from_bytes(self.body[f_at : f_at + f_len]),
            Profile.from_bytes(self.body[t_at : t_at + t_len]),
        )

    def cover(self, start_ms: int, end_ms: int) -> tuple[list[Piece], list[tuple[int, int]]]:
        """The pieces wholly inside [start_ms, end_ms), and the [first, last] time ranges of
        the slices the window only partly covers (their rows must be read)."""
        whole = self.header["whole"]
        if whole is None or whole["last_ms"] < start_ms or whole["first_ms"] >= end_ms:
            return [], []
        if whole["first_ms"] >= start_ms and whole["last_ms"] < end_ms:
            return [self.piece(whole)], []
        inside, partial = [], []
        for entry in self.header["slices"]:
            first, last = entry["first_ms"], entry["last_ms"]
            if last < start_ms or first >= end_ms:
                continue
            if first >= start_ms and last < end_ms:
                inside.append(self.piece(entry))
            else:
                partial.append((first, last))
        return inside, partial


def load_profile(
    data_file: Path | str,
    spec: Spec,
    location: LogLocation | None = None,
    *,
    size: int | None = None,
) -> FileProfile | None:
    """The file's profile if it exists and was built for ``spec`` from this very file
    (``size``: the data file's, when a listing already gave it)."""
    place = location or _LOCAL
    try:
        found = FileProfile.decode(place.get(profile_path(str(data_file))))
        size = place.size(str(data_file)) if size is None else size
    except (OSError, ValueError):
        return None
    if found.header["spec"] != spec.key or found.header["source_size"] != size:
        return None
    return found


def profile_log(
    root: Path,
    *,
    now: datetime | None = None,
    location: LogLocation | None = None,
    only: Sequence[str] | None = None,
) -> int:
    """Profile each compacted file of the last ``BACKFILL`` that lacks a profile for its
    endpoint's spec (endpoints no monitor watches have none); return how many were profiled.

    ``location`` (default: ``root`` itself) is where the files are; ``only`` limits the work
    to the files a compaction just wrote: a shared location holds every replica's files, and
    checking them all each minute would cost a read per file. A file left unprofiled (written
    before its spec, or by a compaction killed early) is profiled by the monitor run that needs
    it, which saves the profile for the next.

    Run by the compaction child right after compaction, so it is never on a serving worker.
    One profiling at a time per log root; one already running makes this one return 0.
    """
    place = location or LogLocation.local(root)
    since = (now or datetime.now(UTC)) - BACKFILL
    done = 0
    root.mkdir(parents=True, exist_ok=True)
    with (root / "profile.lock").open("ab") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return 0
        if only is not None:  # just written: no listing, and no profile to look for yet
            return _profile_written(place, only)
        for endpoint in place.endpoints():
            spec = read_spec(place, endpoint)
            if spec is None:
                continue
            for found in place.files(endpoint, since):
                if load_profile(found.path, spec, place, size=found.size) is None:
                    write_profile(found.path, profile_file(found.path, spec, place), place)
                    done += 1
    return done


def _profile_written(place: LogLocation, paths: Sequence[str]) -> int:
    specs: dict[str, Spec | None] = {}
    done = 0
    for path in paths:
        endpoint = next(
            (p.removeprefix("endpoint=") for p in path.split("/") if p.startswith("endpoint=")),
            None,
        )
        if endpoint is None:
            continue
        if endpoint not in specs:
            specs[endpoint] = read_spec(place, endpoint)
        spec = specs[endpoint]
        if spec is not None:
            write_profile(path, profile_file(path, spec, place), place)
            done += 1
    return done


# --- the spec, beside the endpoint's partitions ----------------------------------------------


def write_spec(root: Path, endpoint: str, spec: Spec, location: LogLocation | None = None) -> None:
    """Record what to profile for ``endpoint`` (a no-op when it is already recorded)."""
    place = location or LogLocation.local(root)
    text = json.dumps({"key": spec.key, "kinds": list(spec.kinds.items())})
    path = f"{place.endpoint_folder(endpoint)}/{SPEC_FILE}"
    try:
        if place.get(path).decode() == text:
            return
    except (OSError, ValueError):
        pass
    place.put(path, text.encode())


def read_spec(location: LogLocation | Path, endpoint: str | None = None) -> Spec | None:
    """The spec recorded for ``endpoint`` (or in an endpoint's folder, given as a Path)."""
    if isinstance(location, Path):
        path, place = str(location / SPEC_FILE), _LOCAL
    else:
        path, place = f"{location.endpoint_folder(str(endpoint))}/{SPEC_FILE}", location
    try:
        data = json.loads(place.get(path))
        return Spec(dict((str(name), str(kind)) for name, kind in data["kinds"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
