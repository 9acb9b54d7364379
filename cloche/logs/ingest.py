"""Edge logs into the central payload log: each uploaded chunk taken exactly once.

`cloche edge sync` (cloche/edge/sync.py) sends chunks of whole log lines named by (site,
segment, start offset). A chunk is written to ``incoming/`` and fsynced, then recorded in
``edge_uploads`` (the commit is the moment it counts), then moved among the log's segments,
where compaction takes it like any worker's segment. A crash between the steps is repaired by
``recover``: a recorded chunk still in ``incoming/`` is moved on, an unrecorded one is deleted
(its sender got no answer and sends it again). A chunk sent again is answered with where it
ended, and nothing is written.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from cloche import audit
from cloche.endpoints.service import require_endpoint
from cloche.errors import InvalidInput
from cloche.logs.edge_lines import relabel_lines
from cloche.logs.service import edge_segment_name, log_root
from cloche.serving.payload_log import SEGMENT_SUFFIX
from cloche.store.store import Store
from cloche.store.tables import EdgeUploadRow, utcnow

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
ABANDONED_AFTER_S = 300.0  # an unrecorded incoming file this old lost its request


@dataclass(frozen=True)
class Upload:
    accepted: bool  # False: the server had this chunk already
    rows: int
    next_offset: int


def ingest_edge_log(
    store: Store, endpoint: str, *, site: str, segment: str, offset: int, body: bytes
) -> Upload:
    """Take one chunk of an edge spool into ``endpoint``'s payload log (see module docstring)."""
    _check_names(site, segment, offset)
    with store.transaction() as session:
        require_endpoint(session, endpoint)
        done = session.get(EdgeUploadRow, (site, segment, offset))
        if done is not None:
            return Upload(False, 0, done.end_offset)
    lines = relabel_lines(body, endpoint)  # every line checked before anything is written
    root = log_root(store.home)
    staging = uuid.uuid4().hex
    incoming = _incoming(root) / f"{staging}{SEGMENT_SUFFIX}"
    _write_synced(incoming, b"".join(lines))
    received = utcnow()  # this server's clock, kept beside the edge's on every row
    try:
        with store.transaction() as session:
            session.add(
                EdgeUploadRow(
                    site=site,
                    segment=segment,
                    start_offset=offset,
                    end_offset=offset + len(body),
                    rows=len(lines),
                    endpoint=endpoint,
                    staging=staging,
                    received_at=received,
                )
            )
    except IntegrityError:  # the same chunk, sent twice at once: the other request took it
        incoming.unlink(missing_ok=True)
        with store.transaction() as session:
            row = session.get(EdgeUploadRow, (site, segment, offset))
            return Upload(False, 0, row.end_offset if row else offset)
    _publish(root, incoming, received)
    return Upload(True, len(lines), offset + len(body))


def recover(store: Store) -> int:
    """Finish or discard what a crash left in ``incoming/``; return how many files moved on."""
    root = log_root(store.home)
    folder = root / "incoming"
    if not folder.is_dir():
        return 0
    moved = 0
    for path in sorted(folder.glob(f"*{SEGMENT_SUFFIX}")):
        with store.transaction() as session:
            recorded = session.scalar(
                select(EdgeUploadRow.received_at).where(EdgeUploadRow.staging == path.stem)
            )
        if recorded is not None:
            _publish(root, path, audit.as_utc(recorded))
            moved += 1
        elif time.time() - path.stat().st_mtime > ABANDONED_AFTER_S:
            path.unlink(missing_ok=True)
    return moved


def _check_names(site: str, segment: str, offset: int) -> None:
    for what, value in (("X-Cloche-Site", site), ("X-Cloche-Segment", segment)):
        if not NAME.match(value or ""):
            raise InvalidInput(
                f"{what} must be 1-200 letters, digits, '.', '_' or '-'; got {value!r}",
                hint="upload with `cloche edge sync`, which sets it",
            )
    if offset < 0:
        raise InvalidInput(f"X-Cloche-Offset must be a byte offset >= 0; got {offset}")


def _incoming(root: Path) -> Path:
    folder = root / "incoming"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _publish(root: Path, incoming: Path, received: datetime) -> None:
    """Into the segments compaction reads (no lock file: a closed segment)."""
    segments = root / "segments"
    segments.mkdir(parents=True, exist_ok=True)
    os.replace(incoming, segments / edge_segment_name(incoming.stem, received))
