"""Lineage of any reference (model version, endpoint, batch job, run artifact), both ways: the
service `cloche lineage REF` uses."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloche.errors import BadRequest
from cloche.lineage import service as lineage

from ..render import page
from .pipelines import principal_of

MAX_REF = 300  # as the REST route's query


async def show_lineage(request: Request) -> Response:
    principal_of(request)
    ref = request.query_params.get("ref", "").strip()
    if len(ref) > MAX_REF:
        raise BadRequest(f"the reference is longer than {MAX_REF} characters", hint="shorten it")
    found = None
    if ref:
        found = await asyncio.to_thread(lineage.get_lineage, request.app.state.store, ref)
    return page(request, "lineage_ref.html", "_lineage_ref.html", {"ref": ref, "lineage": found})


ROUTES = [Route("/lineage", show_lineage, methods=["GET"])]
