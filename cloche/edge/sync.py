"""`cloche edge sync`: upload an edge spool to the central server's payload log, exactly once.

The spool is read segment by segment in chunks of whole lines. Each chunk is named by the
spool's site id, the segment's file name and its start offset; the central server records every
name it has taken (logs/ingest.py) and answers a repeat with where that chunk ended, so an
interrupted sync resumes where the server says, and running it twice uploads nothing twice.
The offset reached is saved after every chunk; a segment uploaded whole, and closed, is removed.
Standard library only: this runs on the edge machine, in the bundle's lean runtime.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

from cloche.edge.spool import read_state, segment_files, site_id, write_state
from cloche.errors import ClocheError, InvalidInput, Unavailable, error_class_for_code
from cloche.serving.payload_log import is_closed

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 30.0


@dataclass
class SyncReport:
    site: str
    uploaded_rows: int = 0
    uploaded_bytes: int = 0
    repeated_chunks: int = 0  # chunks the server already had (an earlier, interrupted sync)
    segments_removed: int = 0
    pending: list[str] = field(default_factory=list)  # segments still open (being written)


@dataclass(frozen=True)
class Central:
    url: str
    endpoint: str
    token: str | None
    timeout: float = TIMEOUT_S

    def upload(self, site: str, segment: str, offset: int, chunk: bytes) -> dict[str, int]:
        target = f"{self.url.rstrip('/')}/api/v1/endpoints/{quote(self.endpoint)}/edge-logs"
        headers = {
            "Content-Type": "application/x-ndjson",
            "X-Cloche-Site": site,
            "X-Cloche-Segment": segment,
            "X-Cloche-Offset": str(offset),
        }
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(target, data=chunk, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer: dict[str, int] = json.loads(response.read())
                return answer
        except urllib.error.HTTPError as exc:
            raise _server_error(exc) from None
        except (TimeoutError, urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unavailable(
                f"cannot reach the central server at {self.url}: {reason}",
                hint="nothing was lost: the spool keeps every row not yet uploaded; run the "
                "same command again when the link is up",
            ) from None


def _server_error(exc: urllib.error.HTTPError) -> ClocheError:
    try:
        body = json.loads(exc.read()).get("error", {})
    except (ValueError, AttributeError):
        body = {}
    cls = error_class_for_code(str(body.get("code", "")))
    message = body.get("message") or f"the central server answered HTTP {exc.code}"
    hint = body.get("hint")
    if exc.code == 403:  # the usual cause: a predictor token, which may not upload logs
        hint = "sync with a token of the edge role: `cloche tokens create --role edge` there"
    return cls(f"{message} (nothing was lost: the spool keeps the rows)", hint=hint)


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(
            f"--to must be the central server's http(s) URL, not {url!r}",
            hint="for example --to http://central:8080",
        )
    return url


def sync_spool(spool: Path, central: Central, *, chunk_bytes: int = CHUNK_BYTES) -> SyncReport:
    """Upload every complete line of every segment not yet uploaded; see the module docstring."""
    check_url(central.url)
    report = SyncReport(site=site_id(spool))
    state = read_state(spool)
    for path in segment_files(spool):
        closed = is_closed(path)  # first: a segment closed now has all its lines on disk
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # evicted by the server meanwhile
            state.pop(path.name, None)
            continue
        complete = data[: data.rfind(b"\n") + 1]
        offset = state.get(path.name, 0)
        while offset < len(complete):
            chunk = _chunk(complete, offset, chunk_bytes)
            answer = central.upload(report.site, path.name, offset, chunk)
            if answer.get("accepted"):
                report.uploaded_rows += int(answer.get("rows", 0))
                report.uploaded_bytes += len(chunk)
            else:
                report.repeated_chunks += 1
            offset = int(answer["next_offset"])
            state[path.name] = offset
            write_state(spool, state)
        if closed and offset >= len(data):
            path.unlink(missing_ok=True)
            path.with_suffix(".lock").unlink(missing_ok=True)
            state.pop(path.name, None)
            write_state(spool, state)
            report.segments_removed += 1
        elif not closed:
            report.pending.append(path.name)
    return report


def _chunk(data: bytes, offset: int, limit: int) -> bytes:
    """Whole lines from ``offset``, about ``limit`` bytes (one longer line goes whole)."""
    end = data.rfind(b"\n", offset, offset + limit)
    if end < 0:
        end = data.find(b"\n", offset)
    return data[offset : end + 1]
