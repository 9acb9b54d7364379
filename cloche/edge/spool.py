"""The edge's payload log: segments spooled on local disk up to a size cap, for `edge sync`.

Rows are written exactly as a `cloche up` worker writes them (serving/payload_log.py), so the
central server takes the synced lines as they are. At the cap the setting decides, and neither
way is silent: ``stop`` logs no more rows (counted as refused), ``drop-oldest`` deletes the
oldest closed segments (their unsynced rows counted as evicted). Both counters are in /metrics.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path

from cloche.serving.payload_log import ROTATE_BYTES, SEGMENT_SUFFIX, PayloadLog, is_closed

log = logging.getLogger("cloche.edge")
STATE_FILE = "sync-state.json"  # {segment file name: bytes already uploaded}
SITE_FILE = "site-id"
MIN_ROTATE = 64 * 1024


class WhenFull(StrEnum):
    STOP = "stop"
    DROP_OLDEST = "drop-oldest"


def segments_dir(spool: Path) -> Path:
    return spool / "segments"


def site_id(spool: Path) -> str:
    """This spool's id, made once: with a segment's name and offset it names every upload."""
    path = spool / SITE_FILE
    if not path.exists():
        spool.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(uuid.uuid4().hex)
        os.replace(tmp, path)
    return path.read_text().strip()


def read_state(spool: Path) -> dict[str, int]:
    try:
        state = json.loads((spool / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): int(v) for k, v in state.items()} if isinstance(state, dict) else {}


def write_state(spool: Path, state: dict[str, int]) -> None:
    """Atomically: a sync killed while writing leaves the previous state, never a torn one."""
    path = spool / STATE_FILE
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with tmp.open("w") as fh:
        json.dump(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def segment_files(spool: Path) -> list[Path]:
    """The spool's segments, oldest first (a segment's name starts with its writer's pid)."""
    folder = segments_dir(spool)
    if not folder.is_dir():
        return []
    return sorted(folder.glob(f"*{SEGMENT_SUFFIX}"), key=lambda p: (p.stat().st_mtime_ns, p.name))


def spooled_bytes(spool: Path) -> int:
    return sum(_size(p) for p in segment_files(spool))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # synced and removed meanwhile
        return 0


class Spool(PayloadLog):
    """A PayloadLog that keeps its segments under ``max_bytes``, as ``when_full`` says."""

    def __init__(self, root: Path, *, max_bytes: int, when_full: WhenFull) -> None:
        # Several segments fit under the cap, so dropping the oldest frees room in steps.
        super().__init__(root, rotate_bytes=max(MIN_ROTATE, min(ROTATE_BYTES, max_bytes // 8)))
        self.root = root
        self.max_bytes = max_bytes
        self.when_full = WhenFull(when_full)
        self.used = spooled_bytes(root)
        self.refused = 0
        self.evicted = 0
        self._warned = False

    def write(self, lines: Sequence[bytes]) -> None:
        size = sum(len(line) for line in lines)
        if self.used + size > self.max_bytes:
            self.used = spooled_bytes(self.root)  # a sync may have removed segments since
            if self.used + size > self.max_bytes and self.when_full is WhenFull.DROP_OLDEST:
                self._evict(self.used + size - self.max_bytes)
            if self.used + size > self.max_bytes:
                self.refused += len(lines)
                self._warn_full()
                return
        before = self.logged
        super().write(lines)
        if self.logged > before:
            self.used += size

    def _evict(self, need: int) -> None:
        """Delete the oldest closed segments until ``need`` bytes are free (or none is left)."""
        state = read_state(self.root)
        open_path = self._segment.path if self._segment is not None else None
        for path in segment_files(self.root):
            if need <= 0:
                break
            if path == open_path or not is_closed(path):
                continue
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            synced = state.get(path.name, 0)
            lost = data.count(b"\n", synced)
            path.unlink(missing_ok=True)
            path.with_suffix(".lock").unlink(missing_ok=True)
            self.evicted += lost
            self.used -= len(data)
            need -= len(data)
            if lost:
                log.warning("spool full: dropped %d unsynced rows of %s", lost, path.name)

    def _warn_full(self) -> None:
        if not self._warned:
            self._warned = True
            log.warning(
                "spool full (%d bytes): rows are no longer logged until `cloche edge sync` "
                "uploads them (or start with --spool-full drop-oldest)",
                self.max_bytes,
            )

    def gauges(self) -> dict[str, dict[str, float]]:
        return super().gauges() | {
            "cloche_spool_bytes": {"": float(self.used)},
            "cloche_spool_refused_rows_total": {"": float(self.refused)},
            "cloche_spool_evicted_rows_total": {"": float(self.evicted)},
        }
