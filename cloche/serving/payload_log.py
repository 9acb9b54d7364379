"""The payload log: every served prediction (and every failed request), per worker, on disk.

Each worker appends Arrow IPC record batches to its own segment file, one batch per model
call, *before* it answers the requests in that batch: a worker killed afterwards has already
handed what it answered to the OS. Segments rotate at a size cap; closed segments (and those
of dead workers) are compacted into Parquet partitions ``endpoint=/date=/hour=``. A failing
sink never fails serving: what could not be written is counted, never silently lost.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson
import pyarrow as pa

log = logging.getLogger("cloche.serving")

SCHEMA = pa.schema(
    [
        ("time", pa.timestamp("ms", tz="UTC")),
        ("request_id", pa.string()),
        ("endpoint", pa.string()),
        ("model", pa.string()),
        ("version", pa.int32()),
        ("deployment_id", pa.int64()),
        ("shadow", pa.bool_()),
        ("status", pa.int16()),
        ("latency_ms", pa.float32()),
        ("inputs", pa.string()),  # JSON rows, as the model received them
        ("outputs", pa.string()),  # JSON {output name: values}
        ("error", pa.string()),
    ]
)
SEGMENT_SUFFIX = ".arrows"
ROTATE_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Entry:
    """One request's log row, before it is written."""

    time_ms: int
    request_id: str
    endpoint: str
    model: str
    version: int
    deployment_id: int
    shadow: bool
    status: int
    latency_ms: float
    inputs: np.ndarray | str | None  # str: the raw body of a request that failed to decode
    outputs: dict[str, np.ndarray] | None
    error: str | None = None


def to_json(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    try:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    except TypeError:  # object arrays (strings beside numbers) go through lists
        if isinstance(value, dict):
            return orjson.dumps({k: np.asarray(v).tolist() for k, v in value.items()}).decode()
        return orjson.dumps(np.asarray(value).tolist()).decode()


def entries_to_batch(entries: Sequence[Entry]) -> pa.RecordBatch:
    columns = {
        "time": [e.time_ms for e in entries],
        "request_id": [e.request_id for e in entries],
        "endpoint": [e.endpoint for e in entries],
        "model": [e.model for e in entries],
        "version": [e.version for e in entries],
        "deployment_id": [e.deployment_id for e in entries],
        "shadow": [e.shadow for e in entries],
        "status": [e.status for e in entries],
        "latency_ms": [e.latency_ms for e in entries],
        "inputs": [to_json(e.inputs) for e in entries],
        "outputs": [to_json(e.outputs) for e in entries],
        "error": [e.error for e in entries],
    }
    return pa.RecordBatch.from_pydict(columns, schema=SCHEMA)


class SegmentWriter:
    """This worker's open segment: an IPC stream plus a lock file held while it is open."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"seg-{os.getpid()}-{time.time_ns()}"
        self.path = folder / f"{stem}{SEGMENT_SUFFIX}"
        self._lock: IO[bytes] = (folder / f"{stem}.lock").open("wb")
        # Compaction takes this lock to know a segment is closed (its writer is gone).
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._sink = pa.OSFile(str(self.path), mode="w")
        self._writer = pa.ipc.new_stream(self._sink, SCHEMA)

    def write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)

    @property
    def size(self) -> int:
        return int(self._sink.tell())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        with contextlib.suppress(Exception):
            self._sink.close()
        fcntl.flock(self._lock, fcntl.LOCK_UN)
        self._lock.close()


class PayloadLog:
    """The writer every deployment in a worker shares. All calls come from the event loop."""

    def __init__(self, root: Path, *, rotate_bytes: int = ROTATE_BYTES) -> None:
        self.folder = root / "segments"
        self.rotate_bytes = rotate_bytes
        self._segment: SegmentWriter | None = None
        self.logged = 0
        self.dropped = 0
        self.rotated: list[Path] = []

    def sampled(self, rate: float) -> bool:
        return rate >= 1.0 or random.random() < rate

    def write(self, entries: Sequence[Entry]) -> None:
        """Hand ``entries`` to the OS; on any failure count them as dropped and go on."""
        if not entries:
            return
        try:
            if self._segment is None:
                self._segment = SegmentWriter(self.folder)
            self._segment.write(entries_to_batch(entries))
            self.logged += len(entries)
        except Exception as exc:  # a full disk or a broken sink must not fail serving
            self.dropped += len(entries)
            log.warning("payload log: could not write %d rows: %s", len(entries), exc)
            self._close_segment()
            return
        if self._segment.size >= self.rotate_bytes:
            self._close_segment()

    def _close_segment(self) -> None:
        if self._segment is not None:
            segment, self._segment = self._segment, None
            segment.close()
            self.rotated.append(segment.path)

    def stats(self) -> dict[str, int]:
        return {"pid": os.getpid(), "logged": self.logged, "dropped": self.dropped}

    def close(self) -> None:
        self._close_segment()


def read_segment(path: Path) -> Iterator[pa.RecordBatch]:
    """The complete batches of a segment; a torn tail (a killed writer) ends the read quietly."""
    try:
        reader = pa.ipc.open_stream(pa.memory_map(str(path)))
    except (pa.ArrowInvalid, OSError):
        return
    while True:
        try:
            yield reader.read_next_batch()
        except StopIteration:
            return
        except (pa.ArrowInvalid, OSError):
            return


def is_closed(path: Path) -> bool:
    """True when no live writer holds the segment's lock."""
    lock = path.with_suffix(".lock")
    if not lock.exists():
        return True
    with lock.open("ab") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        fcntl.flock(fh, fcntl.LOCK_UN)
        return True
