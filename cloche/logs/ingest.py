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
from pathlib import Path

import orjson
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from cloche.endpoints.service import require_endpoint
from cloche.errors import InvalidInput
from cloche.logs.service import log_root
from cloche.serving.payload_log import META_COLUMNS, SEGMENT_SUFFIX
from cloche.store.store import Store
from cloche.store.tables import EdgeUploadRow

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
ENDPOINT_AT = META_COLUMNS.index("endpoint")
DEPLOYMENT_AT = META_COLUMNS.index("deployment_id")
LINE_LENGTHS = (len(META_COLUMNS), len(META_COLUMNS) - 1)  # lines from before "kind" too
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
    lines = _relabel(body, endpoint)
    root = log_root(store.home)
    staging = uuid.uuid4().hex
    incoming = _incoming(root) / f"{staging}{SEGMENT_SUFFIX}"
    _write_synced(incoming, b"".join(lines))
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
                )
            )
    except IntegrityError:  # the same chunk, sent twice at once: the other request took it
        incoming.unlink(missing_ok=True)
        with store.transaction() as session:
            row = session.get(EdgeUploadRow, (site, segment, offset))
            return Upload(False, 0, row.end_offset if row else offset)
    _publish(root, incoming)
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
                select(EdgeUploadRow.site).where(EdgeUploadRow.staging == path.stem)
            )
        if recorded is not None:
            _publish(root, path)
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


def _relabel(body: bytes, endpoint: str) -> list[bytes]:
    """The chunk's lines, each checked and set to ``endpoint`` (the edge knew only its model)."""
    if not body.endswith(b"\n"):
        raise InvalidInput("an edge log chunk must be whole lines, each ending in a newline")
    lines = []
    for number, line in enumerate(body[:-1].split(b"\n"), start=1):
        parts = line.split(b"\t")
        try:
            meta = orjson.loads(parts[0]) if len(parts) == 3 else None
        except orjson.JSONDecodeError:
            meta = None
        if not isinstance(meta, list) or len(meta) not in (
            len(META_COLUMNS),
            len(META_COLUMNS) - 1,
        ):
            raise InvalidInput(
                f"line {number} of the chunk is not a cloche payload log line",
                hint="upload a spool with `cloche edge sync`; nothing of this chunk was kept",
            )
        meta[ENDPOINT_AT] = endpoint
        meta[DEPLOYMENT_AT] = None  # served at the edge, by no deployment of this server
        lines.append(b"%s\t%s\t%s\n" % (orjson.dumps(meta), parts[1], parts[2]))
    return lines


def _incoming(root: Path) -> Path:
    folder = root / "incoming"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _publish(root: Path, incoming: Path) -> None:
    """Into the segments compaction reads (no lock file: a closed segment)."""
    segments = root / "segments"
    segments.mkdir(parents=True, exist_ok=True)
    os.replace(incoming, segments / f"edge-{incoming.name}")
