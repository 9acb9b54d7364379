"""Monitors: the list (search, sort, pages), a monitor's page (heat table of skew and drift,
the latest run's data quality, performance and health), and run now, pause, resume."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from cloche.alerts.masking import for_principal
from cloche.auth.roles import Permission, Principal, allows, authorize
from cloche.errors import ClocheError, NotFound
from cloche.monitoring import listing as listing_service
from cloche.monitoring import runs, service
from cloche.monitoring.entities import Monitor, MonitorRun

from ..charts.heat import heat_table
from ..paging import fetch_page, parse_listing
from ..render import SESSION_KEY, html, is_htmx, page
from . import monitor_forms

SORTS = ("name", "-name", "created", "-created", "next_run", "-next_run")
SORT_KEYS = {"name": "name", "created": "created", "next_run": "next_run"}
HEAT_RUNS = 8  # the heat table's columns: the last runs' windows
ACTIONS = {"run": "Run now", "pause": "Pause", "resume": "Resume"}


def _principal(request: Request) -> Principal:
    principal: Principal = request.scope[SESSION_KEY].principal
    return principal


def _reader(request: Request) -> Principal:
    principal = _principal(request)
    authorize(principal, Permission.READ)
    return principal


async def list_monitors(request: Request) -> Response:
    principal = _reader(request)
    listing = parse_listing(request.query_params, sorts=SORTS, default="name")
    store = request.app.state.store
    found = await asyncio.to_thread(
        fetch_page,
        listing,
        lambda asked: listing_service.page_monitors(store, asked),
        sorts=SORT_KEYS,
    )
    rows = replace(found, rows=for_principal(principal, found.rows))
    context = {
        "page": rows,
        "sorts": SORTS,
        "can_create": allows(principal, Permission.DEPLOY),
        "form": monitor_forms.DEFAULTS,
        "metrics": monitor_forms.METRICS,
    }
    return page(request, "monitors.html", "_monitors_table.html", context)


def _read_monitor(request: Request, name: str) -> tuple[Monitor, list[MonitorRun]]:
    store = request.app.state.store
    return service.get_monitor(store, name), service.list_runs(store, name, limit=HEAT_RUNS)


def _monitor_context(principal: Principal, monitor: Monitor, found: list[MonitorRun]) -> Any:
    monitor, found = for_principal(principal, monitor), for_principal(principal, found)
    return {
        "monitor": monitor,
        "latest": found[0] if found else None,
        "heat": heat_table(found),
        "can_act": allows(principal, Permission.DEPLOY),
        "actions": ACTIONS,
        "action_error": None,
    }


async def show_monitor(request: Request) -> Response:
    principal = _reader(request)
    name = request.path_params["name"]
    monitor, found = await asyncio.to_thread(_read_monitor, request, name)
    context = _monitor_context(principal, monitor, found)
    # After an action posted without htmx (clicked before its script ran, or with scripts off),
    # the redirect names the action: the page says what it did, from the store, not the URL.
    done = request.query_params.get("done")
    if done == "run" and found:
        context["notice"] = _ran(name, found[0])
    elif done in ("pause", "resume"):
        context["notice"] = _enabled(monitor)
    return page(request, "monitor.html", "_monitor_main.html", context)


def _act(request: Request, name: str, action: str, actor: str) -> str:
    """Do ``action`` with the service the API's route calls; what happened, in a sentence."""
    store = request.app.state.store
    if action == "run":
        return _ran(name, runs.run_monitor(store, name, settings=request.app.state.settings))
    return _enabled(service.set_enabled(store, name, action == "resume", actor=actor))


def _ran(name: str, run: MonitorRun) -> str:
    return f"Ran {name}: {run.status}. {run.message}".strip()


def _enabled(monitor: Monitor) -> str:
    return f"{monitor.name} is {'running on schedule' if monitor.enabled else 'paused'}."


async def act(request: Request) -> Response:
    """Run now, pause or resume: the monitoring service, with the API's role and errors."""
    principal = _principal(request)
    name, action = request.path_params["name"], request.path_params["action"]
    if action not in ACTIONS:
        raise NotFound(f"a monitor has no action {action!r}", hint="run, pause or resume")
    await request.form()  # the guard checked its CSRF token; nothing else is read from it
    try:
        authorize(principal, Permission.DEPLOY)
        notice = await asyncio.to_thread(_act, request, name, action, principal.actor)
    except ClocheError as error:
        return _action_error(request, name, error)
    if not is_htmx(request):  # post/redirect/get: a reload does not run it again
        return RedirectResponse(f"/console/monitors/{name}?done={action}", status_code=303)
    monitor, found = await asyncio.to_thread(_read_monitor, request, name)
    context = _monitor_context(principal, monitor, found) | {"notice": notice}
    return html(request, "_monitor_main.html", context)


def _action_error(request: Request, name: str, error: ClocheError) -> Response:
    """The actions again with the message beside them (htmx swaps only the actions)."""
    context = {"monitor_name": name, "actions": ACTIONS, "action_error": error, "can_act": True}
    swap = {"HX-Retarget": "#monitor-actions", "HX-Reswap": "outerHTML"}
    if is_htmx(request):
        return html(
            request, "_monitor_actions.html", context, status=error.http_status, headers=swap
        )
    return html(request, "monitor_actions_page.html", context, status=error.http_status)


ROUTES = [
    Route("/monitors", list_monitors, methods=["GET"]),
    Route("/monitors/{name}", show_monitor, methods=["GET"]),
    Route("/monitors/{name}/{action:str}", act, methods=["POST"]),
]
