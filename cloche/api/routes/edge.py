"""Edge logs: chunks of an edge server's spooled payload log, uploaded by `cloche edge sync`."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Header, Request
from pydantic import BaseModel

from cloche.api.deps import StoreDep, require
from cloche.api.routes import UPLOAD, make_router
from cloche.auth.roles import Permission, Principal
from cloche.logs import ingest

router = make_router("", "edge")
Predictor = Annotated[Principal, Depends(require(Permission.PREDICT))]


class EdgeUpload(BaseModel):
    accepted: bool
    rows: int
    next_offset: int


@router.post("/endpoints/{name}/edge-logs", openapi_extra=UPLOAD)
async def upload_edge_log(
    _: Predictor,
    store: StoreDep,
    request: Request,
    name: str,
    site: Annotated[str, Header(alias="X-Cloche-Site")],
    segment: Annotated[str, Header(alias="X-Cloche-Segment")],
    offset: Annotated[int, Header(alias="X-Cloche-Offset")],
) -> EdgeUpload:
    """Take a chunk of whole payload log lines from an edge server into this endpoint's log.

    A chunk is named by site, segment and offset and taken once: sent again, it is answered with
    ``accepted: false`` and the offset where it ended, so an interrupted sync resumes there.
    """
    body = await request.body()
    upload = await asyncio.to_thread(
        ingest.ingest_edge_log, store, name, site=site, segment=segment, offset=offset, body=body
    )
    return EdgeUpload(accepted=upload.accepted, rows=upload.rows, next_offset=upload.next_offset)
