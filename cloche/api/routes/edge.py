"""Edge logs: chunks of an edge server's spooled payload log, uploaded by `cloche edge sync`."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Header, Request
from pydantic import BaseModel

from cloche.api.deps import SettingsDep, StoreDep, require
from cloche.api.routes import UPLOAD, make_router
from cloche.auth.roles import Permission, Principal
from cloche.errors import PayloadTooLarge
from cloche.logs import ingest

router = make_router("", "edge")
# Its own permission: a predictor token (handed to every app that calls the data plane) must
# not be able to write rows into the log that monitors judge the model by.
EdgeUploader = Annotated[Principal, Depends(require(Permission.EDGE_UPLOAD))]


class EdgeUpload(BaseModel):
    accepted: bool
    rows: int
    next_offset: int


@router.post("/endpoints/{name}/edge-logs", openapi_extra=UPLOAD)
async def upload_edge_log(
    _: EdgeUploader,
    store: StoreDep,
    settings: SettingsDep,
    request: Request,
    name: str,
    site: Annotated[str, Header(alias="X-Cloche-Site")],
    segment: Annotated[str, Header(alias="X-Cloche-Segment")],
    offset: Annotated[int, Header(alias="X-Cloche-Offset")],
) -> EdgeUpload:
    """Take a chunk of whole payload log lines from an edge server into this endpoint's log.

    A chunk is named by site, segment and offset and taken once: sent again, it is answered with
    ``accepted: false`` and the offset where it ended, so an interrupted sync resumes there.
    Needs a token with the ``edge`` role.
    """
    body = await _capped_body(request, settings.server.max_edge_chunk_mb)
    upload = await asyncio.to_thread(
        ingest.ingest_edge_log, store, name, site=site, segment=segment, offset=offset, body=body
    )
    return EdgeUpload(accepted=upload.accepted, rows=upload.rows, next_offset=upload.next_offset)


async def _capped_body(request: Request, cap_mb: int) -> bytes:
    """The body, refused once it passes the cap (before reading it when its length says so)."""
    cap = cap_mb * 1024 * 1024
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise _too_large(cap_mb)
    data = bytearray()
    async for piece in request.stream():
        data += piece
        if len(data) > cap:  # a chunked body, or a Content-Length that lied
            raise _too_large(cap_mb)
    return bytes(data)


def _too_large(cap_mb: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"an edge log chunk may hold at most {cap_mb} MiB",
        hint="`cloche edge sync` sends 1 MiB chunks; an operator can raise "
        "CLOCHE_SERVER__MAX_EDGE_CHUNK_MB on the central server",
    )
