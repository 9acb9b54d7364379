"""Pipelines: the registered ones, a pipeline's page (its graph, a run form generated from its
declared parameters, its runs and schedules), starting a run, creating, pausing, resuming and
deleting a schedule.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from cloche.auth.roles import Permission, Principal, allows, authorize
from cloche.errors import BadRequest, ClocheError
from cloche.pipelines import listing as pipeline_listing
from cloche.pipelines import records, registered, schedules
from cloche.pipelines.entities import PipelineRun
from cloche.pipelines.graph import ParamSpec, PipelineGraph
from cloche.pipelines.loading import parse_params
from cloche.pipelines.render import graph_svg
from cloche.registry.refs import check_name
from cloche.store.store import Store

from ..paging import fetch_page, parse_listing
from ..render import SESSION_KEY, html, is_htmx, page

SORTS = ("name", "-name", "updated", "-updated", "version", "-version")
SORT_KEYS = {"name": "name", "updated": "updated", "version": "version"}
VERSION_SORTS = ("-version", "version")
RECENT_RUNS = 20
EMPTY_SCHEDULE = {
    "cron": "",
    "params": "{}",
    "start": "",
    "end": "",
    "max_runs": "",
    "max_concurrent": "",
    "catch_up": "",
}
# The CLI flag a service message names -> the control it is about (first match wins).
SCHEDULE_FLAGS = (
    ("--cron", "schedule-cron"),
    ("--start", "schedule-start"),
    ("--end", "schedule-end"),
    ("--max-runs", "schedule-max-runs"),
    ("--max-concurrent", "schedule-max-concurrent"),
)
SCHEDULE_ACTIONS = ("pause", "resume", "delete")


def principal_of(request: Request, permission: Permission = Permission.READ) -> Principal:
    """The session's principal, refused (the API's 403) unless its role grants ``permission``."""
    principal: Principal = request.scope[SESSION_KEY].principal
    authorize(principal, permission)
    return principal


async def list_pipelines(request: Request) -> Response:
    principal_of(request)
    listing = parse_listing(request.query_params, sorts=SORTS, default="name")
    store = request.app.state.store
    rows = await asyncio.to_thread(
        fetch_page,
        listing,
        lambda asked: pipeline_listing.page_pipelines(store, asked),
        sorts=SORT_KEYS,
    )
    return page(request, "pipelines.html", "_pipelines_table.html", {"page": rows, "sorts": SORTS})


async def pipeline_versions(request: Request) -> Response:
    """Every registered version of a pipeline, newest first, paged in SQL."""
    principal_of(request)
    name = check_name(request.path_params["name"])
    listing = parse_listing(request.query_params, sorts=VERSION_SORTS, default="-version")
    store = request.app.state.store
    rows = await asyncio.to_thread(
        fetch_page,
        listing,
        lambda asked: pipeline_listing.page_versions(store, name, asked),
        sorts={"version": "version"},
    )
    context = {"page": rows, "sorts": VERSION_SORTS, "name": name}
    return page(request, "pipeline_versions.html", "_pipeline_versions.html", context)


def _form_fields(graph: PipelineGraph, values: dict[str, str]) -> list[dict[str, Any]]:
    """One control per declared parameter: its type decides the input, its default the value."""
    fields = []
    for name, spec in graph.params.items():
        shown = values.get(name)
        if shown is None:
            shown = "" if spec.default is None else _text(spec)
        fields.append({"name": name, "spec": spec, "value": shown, "id": f"param-{name}"})
    return fields


def _text(spec: ParamSpec) -> str:
    if spec.type in ("dict", "list"):
        return json.dumps(spec.default)
    if spec.type == "bool":
        return "true" if spec.default else "false"
    return str(spec.default)


def _pipeline_context(
    principal: Principal, graph: PipelineGraph, values: dict[str, str], **extra: Any
) -> dict[str, Any]:
    return {
        "graph": graph,
        "svg": graph_svg(graph, description=f"Steps of pipeline {graph.name}, left to right"),
        "fields": _form_fields(graph, values),
        "can_deploy": allows(principal, Permission.DEPLOY),
        "form_error": None,
        "error_field": None,
        **extra,
    }


async def show_pipeline(request: Request) -> Response:
    principal = principal_of(request)
    name = check_name(request.path_params["name"])
    graph = await asyncio.to_thread(registered.newest_graph, request.app.state.store, name)
    return html(request, "pipeline.html", _pipeline_context(principal, graph, {}))


async def pipeline_runs(request: Request) -> Response:
    principal_of(request)
    name = check_name(request.path_params["name"])
    runs: list[PipelineRun] = await asyncio.to_thread(
        records.list_runs, request.app.state.store, pipeline=name, limit=RECENT_RUNS
    )
    context = {"name": name, "runs": runs}
    return page(request, "pipeline_runs.html", "_pipeline_runs.html", context)


async def pipeline_schedules(request: Request) -> Response:
    principal = principal_of(request)
    name = check_name(request.path_params["name"])
    return await _schedules(request, principal, name)


async def _schedules(
    request: Request, principal: Principal, name: str, status: int = 200, **extra: Any
) -> Response:
    found = await asyncio.to_thread(
        schedules.list_schedules, request.app.state.store, pipeline=name
    )
    context = {
        "name": name,
        "schedules": found,
        "can_deploy": allows(principal, Permission.DEPLOY),
        "schedule_error": None,
        "failed_id": None,
        "create_error": None,
        "create_field": None,
        "schedule_form": EMPTY_SCHEDULE,
        **extra,
    }
    return page(request, "pipeline_schedules.html", "_pipeline_schedules.html", context, status)


def _form_values(form: FormData, graph: PipelineGraph) -> dict[str, str]:
    return {name: str(form.get(f"param-{name}", "")).strip() for name in graph.params}


def _typed(graph: PipelineGraph, values: dict[str, str]) -> dict[str, Any]:
    """The form's text as typed values; an empty field is left out: the service fills in its
    default, or names it as missing."""
    return parse_params(graph, {k: v for k, v in values.items() if v != ""})


async def start_run(request: Request) -> Response:
    """Queue a run from the form: the registered-pipeline service, with the API's role."""
    principal = principal_of(request, Permission.DEPLOY)  # before the body is read
    name = check_name(request.path_params["name"])
    store = request.app.state.store
    graph = await asyncio.to_thread(registered.newest_graph, store, name)
    values = _form_values(await request.form(), graph)
    try:
        run = await asyncio.to_thread(
            registered.queue_run, store, name, _typed(graph, values), actor=principal.actor
        )
    except ClocheError as error:
        return _run_form_error(request, principal, graph, values, error)
    target = f"/console/runs/{run.id}"
    if is_htmx(request):
        return Response(status_code=200, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def _run_form_error(
    request: Request,
    principal: Principal,
    graph: PipelineGraph,
    values: dict[str, str],
    error: ClocheError,
) -> Response:
    """The form again with the message beside the parameter it names (else below the form)."""
    named = (f"param-{p}" for p in graph.params if f"'{p}'" in error.message)
    context = _pipeline_context(
        principal, graph, values, form_error=error, error_field=next(named, None)
    )
    if is_htmx(request):
        swap = {"HX-Retarget": "#run-form", "HX-Reswap": "outerHTML"}
        return html(
            request, "_pipeline_run_form.html", context, status=error.http_status, headers=swap
        )
    return html(request, "pipeline.html", context, status=error.http_status)


async def change_schedule(request: Request) -> Response:
    """Pause, resume or delete a schedule: the schedules service, with the API's role."""
    principal = principal_of(request, Permission.DEPLOY)  # before the body is read
    name = check_name(request.path_params["name"])
    schedule_id, action = request.path_params["schedule"], request.path_params["action"]
    store = request.app.state.store
    try:
        if action not in SCHEDULE_ACTIONS:
            raise BadRequest(f"no schedule action {action!r}", hint="pause, resume or delete")
        await asyncio.to_thread(_apply, store, schedule_id, action, principal.actor)
    except ClocheError as error:
        failed = {"schedule_error": error, "failed_id": schedule_id}
        return await _schedules(request, principal, name, error.http_status, **failed)
    if not is_htmx(request):
        return RedirectResponse(f"/console/pipelines/{name}", status_code=303)
    done = {"pause": "paused", "resume": "resumed", "delete": "deleted"}[action]
    return await _schedules(request, principal, name, notice=f"Schedule {schedule_id} {done}.")


async def create_schedule(request: Request) -> Response:
    """A schedule from the form: the schedules service (`cloche pipelines schedule`)."""
    principal = principal_of(request, Permission.DEPLOY)  # before the body is read
    name = check_name(request.path_params["name"])
    form = await request.form()
    fields = {k: str(form.get(k, "")).strip() for k in EMPTY_SCHEDULE}
    try:
        made = await asyncio.to_thread(
            schedules.create_schedule,
            request.app.state.store,
            name,
            cron=fields["cron"],
            params=_json_object(fields["params"]),
            start=_moment(fields["start"], "--start"),
            end=_moment(fields["end"], "--end"),
            max_runs=_whole(fields["max_runs"], "--max-runs"),
            max_concurrent=_whole(fields["max_concurrent"], "--max-concurrent"),
            catch_up=fields["catch_up"] == "yes",
            actor=principal.actor,
        )
    except ClocheError as error:
        shown = {"create_error": error, "create_field": _schedule_field(error)}
        return await _schedules(
            request, principal, name, error.http_status, schedule_form=fields, **shown
        )
    if not is_htmx(request):
        return RedirectResponse(f"/console/pipelines/{name}", status_code=303)
    return await _schedules(request, principal, name, notice=f"Schedule {made.id} created.")


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise BadRequest("the parameters are not a JSON object", hint='e.g. {"n": 3} or {}')
    return value


def _whole(text: str, flag: str) -> int | None:
    if text == "":
        return None
    if not text.isdigit():
        raise BadRequest(f"{flag} {text!r} is not a whole number", hint="or leave it empty")
    return int(text)


def _moment(text: str, flag: str) -> datetime | None:
    """A time as the browser's datetime field or the CLI writes it (ISO 8601; no zone: UTC)."""
    if text == "":
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(
            f"{flag} {text!r} is not a time", hint="e.g. 2030-01-31T06:00 (UTC)"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _schedule_field(error: ClocheError) -> str:
    """The control a schedule error is about, to show the message beside it."""
    for flag, field in SCHEDULE_FLAGS:
        if flag in error.message:
            return field
    return "schedule-params" if "param" in error.message else ""


def _apply(store: Store, schedule_id: str, action: str, actor: str) -> None:
    if action == "delete":
        schedules.delete_schedule(store, schedule_id, actor=actor)
    else:
        schedules.set_enabled(store, schedule_id, action == "resume", actor=actor)


ROUTES = [
    Route("/pipelines", list_pipelines, methods=["GET"]),
    Route("/pipelines/{name}", show_pipeline, methods=["GET"]),
    Route("/pipelines/{name}/runs", pipeline_runs, methods=["GET"]),
    Route("/pipelines/{name}/versions", pipeline_versions, methods=["GET"]),
    Route("/pipelines/{name}/runs", start_run, methods=["POST"]),
    Route("/pipelines/{name}/schedules", pipeline_schedules, methods=["GET"]),
    Route("/pipelines/{name}/schedules", create_schedule, methods=["POST"]),
    Route("/pipelines/{name}/schedules/{schedule}/{action}", change_schedule, methods=["POST"]),
]
