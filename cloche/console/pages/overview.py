"""Overview: endpoints and their health, open alerts, running batch jobs, runs awaiting approval.

Each section is its own route over one service, so htmx refreshes them one by one; the full
page renders all four for the first view (and for browsers without JavaScript).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloche.auth.roles import Permission, authorize
from cloche.batch import service as batch
from cloche.endpoints import service as endpoints
from cloche.endpoints.entities import Endpoint
from cloche.errors import NotFound
from cloche.monitoring import service as monitoring
from cloche.pipelines import records as runs
from cloche.store.paging import PageRequest
from cloche.store.store import Store

from ..render import SESSION_KEY, html

SHOWN = 10  # a short list each; its page has the rest


def endpoint_health(endpoint: Endpoint) -> str:
    """What an endpoint serves, in a word: serving, shadow only, or nothing deployed."""
    live = [d for d in endpoint.deployments if not d.shadow and d.traffic > 0]
    if live:
        return "serving"
    return "shadow only" if endpoint.deployments else "nothing deployed"


def _endpoints(store: Store) -> dict[str, Any]:
    found = endpoints.page_endpoints(store, PageRequest(limit=SHOWN))
    return {"endpoints": found.items, "endpoint_total": found.total, "health": endpoint_health}


def _alerts(store: Store) -> dict[str, Any]:
    return {"alerts": monitoring.list_alerts(store, state="open", limit=SHOWN)}


def _jobs(store: Store) -> dict[str, Any]:
    return {"jobs": batch.list_jobs(store, state="running", limit=SHOWN)}


def _approvals(store: Store) -> dict[str, Any]:
    return {"runs": runs.list_runs(store, state="waiting", limit=SHOWN)}


SECTIONS: dict[str, Callable[[Store], dict[str, Any]]] = {
    "endpoints": _endpoints,
    "alerts": _alerts,
    "jobs": _jobs,
    "approvals": _approvals,
}


async def _read(request: Request, section: str) -> dict[str, Any]:
    authorize(request.scope[SESSION_KEY].principal, Permission.READ)
    return await asyncio.to_thread(SECTIONS[section], request.app.state.store)


async def overview(request: Request) -> Response:
    context: dict[str, Any] = {"sections": list(SECTIONS)}
    for section in SECTIONS:
        context |= await _read(request, section)
    return html(request, "overview.html", context)


async def section(request: Request) -> Response:
    """One section alone (htmx refreshes it in place)."""
    name = request.path_params["section"]
    if name not in SECTIONS:
        raise NotFound(f"the overview has no section {name!r}", hint="open /console")
    context = await _read(request, name)
    return html(request, f"_overview_{name}.html", context)


ROUTES = [
    Route("/", overview, methods=["GET"]),
    Route("/overview/{section:str}", section, methods=["GET"]),
]
