"""Endpoints: the list (search, sort, pages), creating one, an endpoint's page and its sections.

An endpoint's page renders its deployments; its traffic charts, recent payload-log rows and
shadow agreement are sections of their own (each one service), which htmx loads into the page.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloche.auth.roles import Permission, Principal, allows, authorize
from cloche.endpoints import service as endpoints
from cloche.endpoints.entities import Endpoint
from cloche.errors import BadRequest, ClocheError
from cloche.logs import service as logs
from cloche.monitoring import traffic
from cloche.monitoring.traffic import EndpointTraffic
from cloche.registry.refs import check_name

from ..paging import fetch_page, parse_listing
from ..render import SESSION_KEY, html, is_htmx, page
from .forms import form_error, form_fields, go_to
from .overview import endpoint_health

SORTS = ("name", "-name", "created", "-created")
SORT_KEYS = {"name": "name", "created": "created"}
LOG_ROWS = 50  # the newest rows; `cloche logs` reads the rest
LOG_SINCE = ("1h", "24h", "7d")


def _reader(request: Request) -> Principal:
    principal: Principal = request.scope[SESSION_KEY].principal
    authorize(principal, Permission.READ)
    return principal


def _name(request: Request) -> str:
    return check_name(request.path_params["name"])


async def list_endpoints(request: Request) -> Response:
    principal = _reader(request)
    listing = parse_listing(request.query_params, sorts=SORTS, default="name")
    store = request.app.state.store
    found = await asyncio.to_thread(
        fetch_page, listing, lambda asked: endpoints.page_endpoints(store, asked), sorts=SORT_KEYS
    )
    context = {
        "page": found,
        "sorts": SORTS,
        "health": endpoint_health,
        "can_deploy": allows(principal, Permission.DEPLOY),
        "form": {"name": "", "description": ""},
    }
    return page(request, "endpoints.html", "_endpoints_table.html", context)


async def create_endpoint(request: Request) -> Response:
    """A new endpoint with no deployments: the endpoint service, the API's role and errors."""
    principal: Principal = request.scope[SESSION_KEY].principal
    fields = await form_fields(request, ("name", "description"))
    try:
        authorize(principal, Permission.DEPLOY)
        created = await asyncio.to_thread(
            endpoints.create_endpoint,
            request.app.state.store,
            name=fields["name"],
            description=fields["description"],
            actor=principal.actor,
        )
    except ClocheError as error:
        context = {"form": fields, "form_error": error, "can_deploy": True}
        return form_error(request, "_endpoint_create_form.html", "endpoint-create", context, error)
    return go_to(request, f"/console/endpoints/{created.name}")


def endpoint_context(principal: Principal, endpoint: Endpoint, **extra: Any) -> dict[str, Any]:
    """What the endpoint's main section shows, and which of its forms this role gets."""
    live = [d for d in endpoint.deployments if not d.shadow]
    return {
        "endpoint": endpoint,
        "health": endpoint_health(endpoint),
        "can_deploy": allows(principal, Permission.DEPLOY),
        "split": {d.ref: str(d.traffic) for d in live},
        "deploy_form": {"model": "", "traffic": "", "shadow": ""},
        "split_error": None,
        "deploy_error": None,
        **extra,
    }


async def show_endpoint(request: Request) -> Response:
    principal = _reader(request)
    found = await asyncio.to_thread(endpoints.get_endpoint, request.app.state.store, _name(request))
    context = endpoint_context(principal, found, log_since=LOG_SINCE)
    return page(request, "endpoint.html", "_endpoint_main.html", context)


def _summary(found: EndpointTraffic) -> list[dict[str, Any]]:
    """Per deployment, the window in numbers: requests, mean rate, latest quantiles, errors."""
    out = []
    for d in found.deployments:
        counted = [i for i, n in enumerate(d.requests) if n is not None]
        failed = sum(
            (d.requests[i] or 0) * ((d.client_error_rate[i] or 0) + (d.server_error_rate[i] or 0))
            for i in counted
        )
        out.append(
            {
                "deployment": d.deployment,
                "requests": d.total_requests,
                "per_s": d.total_requests / (len(counted) * found.step_s) if counted else None,
                "p50_ms": _ms(_last(d.p50_s)),
                "p95_ms": _ms(_last(d.p95_s)),
                "p99_ms": _ms(_last(d.p99_s)),
                "error_rate": failed / d.total_requests if d.total_requests else None,
            }
        )
    return out


def _last(values: list[float | None]) -> float | None:
    return next((v for v in reversed(values) if v is not None), None)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


async def traffic_section(request: Request) -> Response:
    """Charts of the last hour or day (drawn by endpoint_charts.js from ``data-traffic``)."""
    _reader(request)
    window = request.query_params.get("window", "1h")
    found = await asyncio.to_thread(
        traffic.endpoint_traffic, request.app.state.store, _name(request), window
    )
    context = {
        "traffic": found,
        "summary": _summary(found),
        "windows": list(traffic.WINDOWS),
        "data": found.model_dump_json(),
        "quiet": all(d.total_requests == 0 for d in found.deployments),
    }
    return _section(request, "_endpoint_traffic.html", {"name": found.endpoint, **context})


async def logs_section(request: Request) -> Response:
    """The newest payload-log rows (the service behind `cloche logs`), newest first."""
    _reader(request)
    since = request.query_params.get("since", "1h")
    if since not in LOG_SINCE:
        raise BadRequest(f"since {since!r} is not one of {', '.join(LOG_SINCE)}", hint="e.g. 1h")
    name = _name(request)
    table = await asyncio.to_thread(
        logs.read_endpoint_log, request.app.state.store, endpoint=name, since=since, limit=LOG_ROWS
    )
    rows = list(reversed(logs.rows(table)))
    for row in rows:
        row["inputs_text"] = _short(row["inputs"])
        row["outputs_text"] = _short(row["outputs"])
    context = {"rows": rows, "name": name, "since": since, "log_since": LOG_SINCE}
    return _section(request, "_endpoint_logs.html", context)


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def shadow_section(request: Request) -> Response:
    """How often each shadow deployment agreed with the live answers over the last day."""
    _reader(request)
    name = _name(request)
    found = await asyncio.to_thread(
        logs.shadow_agreement, request.app.state.store, endpoint=name, since="24h"
    )
    return _section(request, "_endpoint_shadow.html", {"agreements": found, "name": name})


def _section(request: Request, partial: str, context: dict[str, Any]) -> Response:
    """The section alone for htmx; without JavaScript, on a page of its own."""
    if is_htmx(request):
        return html(request, partial, context)
    return html(request, "endpoint_section_page.html", {**context, "section_template": partial})


ROUTES = [
    Route("/endpoints", list_endpoints, methods=["GET"]),
    Route("/endpoints", create_endpoint, methods=["POST"]),
    Route("/endpoints/{name}", show_endpoint, methods=["GET"]),
    Route("/endpoints/{name}/traffic", traffic_section, methods=["GET"]),
    Route("/endpoints/{name}/logs", logs_section, methods=["GET"]),
    Route("/endpoints/{name}/shadow", shadow_section, methods=["GET"]),
]
