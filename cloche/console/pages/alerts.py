"""Alerts: open and resolved (a filter), searched, sorted and paged, with the values that
breached; acknowledging one is the API's ack, with its role and errors."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from cloche.alerts.masking import for_principal
from cloche.auth.roles import Permission, Principal, allows, authorize
from cloche.errors import BadRequest, ClocheError
from cloche.monitoring import listing as listing_service
from cloche.monitoring import service
from cloche.monitoring.entities import Alert

from ..paging import Listing, Page, fetch_page, parse_listing
from ..render import SESSION_KEY, html, is_htmx, page

STATES = ("open", "resolved", "all")
SORTS = ("-opened", "opened", "monitor", "-monitor", "state", "-state")
SORT_KEYS = {"opened": "opened", "monitor": "monitor", "state": "state"}


def _principal(request: Request) -> Principal:
    principal: Principal = request.scope[SESSION_KEY].principal
    return principal


def _state(raw: str | None) -> str:
    state = raw or "open"
    if state not in STATES:
        shown = ", ".join(STATES)
        raise BadRequest(f"cannot show {state!r} alerts", hint=f"state is one of: {shown}")
    return state


def _listing(request: Request, principal: Principal, state: str, listing: Listing) -> Page[Alert]:
    store = request.app.state.store
    wanted = None if state == "all" else state
    found = fetch_page(
        listing,
        lambda asked: listing_service.page_alerts(store, asked, state=wanted),
        sorts=SORT_KEYS,
    )
    return replace(found, rows=for_principal(principal, found.rows))


async def _context(request: Request, principal: Principal) -> dict[str, Any]:
    state = _state(request.query_params.get("state"))
    listing = parse_listing(request.query_params, sorts=SORTS, default="-opened")
    rows = await asyncio.to_thread(_listing, request, principal, state, listing)
    return {
        "page": rows,
        "state": state,
        "states": STATES,
        "sorts": SORTS,
        "can_ack": allows(principal, Permission.DEPLOY),
        "ack_error": None,
    }


async def list_alerts(request: Request) -> Response:
    principal = _principal(request)
    authorize(principal, Permission.READ)
    context = await _context(request, principal)
    return page(request, "alerts.html", "_alerts_table.html", context)


async def ack(request: Request) -> Response:
    """Acknowledge an alert: the monitoring service's ack, as ``POST /api/v1/alerts/{id}/ack``."""
    principal = _principal(request)
    alert_id: int = request.path_params["alert_id"]
    form = await request.form()
    back = str(form.get("back", ""))
    try:
        authorize(principal, Permission.DEPLOY)
        acked = await asyncio.to_thread(
            service.ack_alert, request.app.state.store, alert_id, actor=principal.actor
        )
    except ClocheError as error:
        return _ack_error(request, alert_id, error)
    if not is_htmx(request):  # post/redirect/get, back to the listing it came from
        target = back if back.startswith("/console/alerts") else "/console/alerts"
        return RedirectResponse(target, status_code=303)
    context = {"a": for_principal(principal, acked), "can_ack": True, "ack_error": None}
    return html(request, "_alerts_row.html", context)


def _ack_error(request: Request, alert_id: int, error: ClocheError) -> Response:
    """The message beside the alert's button (htmx puts it in that row's error cell)."""
    context = {"alert_id": alert_id, "ack_error": error}
    if is_htmx(request):
        swap = {"HX-Retarget": f"#ack-error-{alert_id}", "HX-Reswap": "outerHTML"}
        return html(
            request, "_alerts_ack_error.html", context, status=error.http_status, headers=swap
        )
    return html(request, "alerts_ack_page.html", context, status=error.http_status)


ROUTES = [
    Route("/alerts", list_alerts, methods=["GET"]),
    Route("/alerts/{alert_id:int}/ack", ack, methods=["POST"]),
]
