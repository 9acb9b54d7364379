"""The audit log: newest first, filtered by actor, action and resource, in pages.

Any role that may read sees it, as ``GET /api/v1/audit`` allows (roles.py: READ lists the
audit): the console refuses nothing the API grants. Webhook URLs in it show only their host to
all but admins (``for_principal``), as in the API's answer."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloche import audit
from cloche.alerts.masking import for_principal
from cloche.auth.roles import Permission, Principal, authorize
from cloche.errors import BadRequest

from ..paging import MAX_SEARCH, fetch_page, parse_listing
from ..render import SESSION_KEY, page

FILTERS = ("actor", "action", "resource_type", "resource")
SORTS = ("-at", "at")
SORT_KEYS = {"at": "at"}


def _filters(query: Any) -> dict[str, str]:
    found = {name: query.get(name, "").strip() for name in FILTERS}
    for name, value in found.items():
        if len(value) > MAX_SEARCH:
            raise BadRequest(f"the {name} filter is longer than {MAX_SEARCH} characters")
    return found


def changes(value: dict[str, Any] | None) -> str:
    """Before/after as one line of JSON (empty when there is none)."""
    return "" if not value else json.dumps(value, sort_keys=True, default=str)


async def list_audit(request: Request) -> Response:
    principal: Principal = request.scope[SESSION_KEY].principal
    authorize(principal, Permission.READ)
    listing = parse_listing(request.query_params, sorts=SORTS, default="-at")
    filters = _filters(request.query_params)
    store = request.app.state.store
    chosen = {name: value or None for name, value in filters.items()}
    rows = await asyncio.to_thread(
        fetch_page, listing, lambda asked: audit.page_audit(store, asked, **chosen), sorts=SORT_KEYS
    )
    context = {
        "page": replace(rows, rows=for_principal(principal, rows.rows)),
        "sorts": SORTS,
        "filters": filters,
        "changes": changes,
    }
    return page(request, "audit.html", "_audit_table.html", context)


ROUTES = [Route("/audit", list_audit, methods=["GET"])]
