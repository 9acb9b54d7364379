"""`cloche edge sync`: upload an edge spool to the central server's payload log, exactly once.

The spool is read segment by segment in chunks of whole lines. Each chunk is named by the
spool's site id, the segment's file name and its start offset; the central server records every
name it has taken (logs/ingest.py) and answers a repeat with where that chunk ended, so an
interrupted sync resumes where the server says, and running it twice uploads nothing twice.
The offset reached is saved after every chunk; a segment uploaded whole, and closed, is removed.
The central server's address is checked like every outbound destination (cloche/egress.py): a
loopback or private one needs ``CLOCHE_EGRESS__ALLOW`` on the edge machine, each upload connects
to the address checked, and a redirect is an error, not followed.
Standard library only: this runs on the edge machine, in the bundle's lean runtime.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

from cloche.edge.spool import read_state, segment_files, site_id, write_state
from cloche.egress import Egress, connection
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
    egress: Egress | None = None  # default: CLOCHE_EGRESS__ALLOW from the environment

    def upload(self, site: str, segment: str, offset: int, chunk: bytes) -> dict[str, int]:
        headers = {
            "Content-Type": "application/x-ndjson",
            "X-Cloche-Site": site,
            "X-Cloche-Segment": segment,
            "X-Cloche-Offset": str(offset),
        }
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        path = f"/api/v1/endpoints/{quote(self.endpoint)}/edge-logs"
        answer: dict[str, int] = json.loads(self._request("POST", path, chunk, headers))
        return answer

    def probe(self) -> None:
        """Raise Unavailable if the central server does not answer its health check.

        A sync with nothing to upload makes no other request, and would otherwise report
        success to a server that is down (an operator's cron job would never notice).
        """
        self._request("GET", "/api/v1/health", None, {})

    def _request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> bytes:
        target = f"{self.url.rstrip('/')}{path}"
        destination = (self.egress or Egress.from_env()).check(target, what="central server")
        conn = connection(destination, timeout=self.timeout)
        try:
            conn.request(method, destination.target, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise Unavailable(
                f"cannot reach the central server at {self.url}: {exc or type(exc).__name__}",
                hint="nothing was lost: the spool keeps every row not yet uploaded; run the "
                "same command again when the link is up",
            ) from None
        finally:
            conn.close()
        if response.status != 200:
            raise _server_error(response.status, data)
        return data


def _server_error(status: int, data: bytes) -> ClocheError:
    try:
        body = json.loads(data).get("error", {})
    except (ValueError, AttributeError):
        body = {}
    cls = error_class_for_code(str(body.get("code", "")))
    message = body.get("message") or f"the central server answered HTTP {status}"
    hint = body.get("hint")
    if status == 403:  # the usual cause: a predictor token, which may not upload logs
        hint = "sync with a token of the edge role: `cloche tokens create --role edge` there"
    elif 300 <= status < 400:
        message = f"the central server answered HTTP {status}, a redirect, which is not followed"
        hint = "give --to the server's final URL"
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
    # Refused before anything is read (and again at each upload, which connects where it checked).
    (central.egress or Egress.from_env()).check(central.url, what="central server")
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
    if report.uploaded_rows == 0 and report.repeated_chunks == 0:
        central.probe()
    return report


def _chunk(data: bytes, offset: int, limit: int) -> bytes:
    """Whole lines from ``offset``, about ``limit`` bytes (one longer line goes whole)."""
    end = data.rfind(b"\n", offset, offset + limit)
    if end < 0:
        end = data.find(b"\n", offset)
    return data[offset : end + 1]
