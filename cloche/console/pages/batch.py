"""Batch jobs: the list (filter by state, search, sort, pages), a job's page with live progress
and its bad rows, starting a job, cancelling and resuming one. Schedules: batch_schedules.py."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from cloche.auth.roles import Permission, Principal, allows, authorize
from cloche.batch import service
from cloche.batch.entities import BatchJob
from cloche.batch.error_rows import ErrorRow, page_error_rows
from cloche.batch.listing import JOB_STATES, page_jobs
from cloche.batch.places import Places
from cloche.batch.spec import JobSpec
from cloche.errors import BadRequest, ClocheError, DestinationRefused, InvalidReference, NotFound

from ..paging import Listing, Page, fetch_page, parse_listing
from ..render import SESSION_KEY, html, is_htmx, page

STATES = JOB_STATES
FORMATS = ("parquet", "jsonl", "csv")
SORTS = ("-created", "created", "state", "-state")
SORT_KEYS = {"created": "created", "state": "state"}
ROW_ORDER: dict[str, Any] = {"sorts": ("row",), "default": "row"}  # input order only
ROW_SORT = {"row": "row"}
FORM_SWAP = {"HX-Retarget": "#batch-form", "HX-Reswap": "outerHTML"}
EMPTY_FORM = {"model": "", "input": "", "output": "", "input_format": "", "output_format": ""}


def principal_of(request: Request, permission: Permission = Permission.READ) -> Principal:
    principal: Principal = request.scope[SESSION_KEY].principal
    authorize(principal, permission)
    return principal


def _state_filter(raw: str) -> str | None:
    if raw and raw not in STATES:
        raise BadRequest(f"no job state {raw!r}", hint=f"use one of: {', '.join(STATES)}")
    return raw or None


async def list_jobs(request: Request) -> Response:
    principal = principal_of(request)
    listing = parse_listing(request.query_params, sorts=SORTS, default="-created")
    state = _state_filter(request.query_params.get("state", ""))
    store = request.app.state.store
    rows = await asyncio.to_thread(
        fetch_page, listing, lambda asked: page_jobs(store, asked, state=state), sorts=SORT_KEYS
    )
    context = {
        "page": rows,
        "sorts": SORTS,
        "states": STATES,
        "state": state or "",
        "can_run": allows(principal, Permission.DEPLOY),
        "form": EMPTY_FORM,
        "formats": FORMATS,
    }
    return page(request, "batch.html", "_batch_table.html", context)


def _job_context(principal: Principal, job: BatchJob, **extra: Any) -> dict[str, Any]:
    return {"job": job, "can_run": allows(principal, Permission.DEPLOY), **extra}


async def show_job(request: Request) -> Response:
    principal = principal_of(request)
    job = await asyncio.to_thread(
        service.get_job, request.app.state.store, request.path_params["job_id"]
    )
    context = _job_context(principal, job)
    if not is_htmx(request):  # the live refresh swaps the main section only
        context["errors"] = await _error_rows(request, job.id, parse_listing({}, **ROW_ORDER))
    return page(request, "batch_job.html", "_batch_job_main.html", context)


async def show_error_rows(request: Request) -> Response:
    """A page of the job's bad rows (row number and reason), from the batch service."""
    principal = principal_of(request)
    listing = parse_listing(request.query_params, **ROW_ORDER)
    job = await asyncio.to_thread(
        service.get_job, request.app.state.store, request.path_params["job_id"]
    )
    errors = await _error_rows(request, job.id, listing)
    if is_htmx(request):
        context = {"errors": errors, "job_id": job.id, "job_done": job.done}
        return html(request, "_batch_errors.html", context)
    return html(request, "batch_job.html", _job_context(principal, job, errors=errors))


async def _error_rows(request: Request, job_id: str, listing: Listing) -> Page[ErrorRow]:
    store = request.app.state.store
    return await asyncio.to_thread(
        fetch_page, listing, lambda asked: page_error_rows(store, job_id, asked), sorts=ROW_SORT
    )


def job_spec(fields: dict[str, str]) -> JobSpec:
    for name in ("input_format", "output_format"):
        if fields[name] and fields[name] not in FORMATS:
            raise BadRequest(f"{name} {fields[name]!r} is not one of {', '.join(FORMATS)}")
    return JobSpec(
        input=fields["input"],
        output=fields["output"],
        input_format=fields["input_format"] or None,
        output_format=fields["output_format"] or "parquet",  # type: ignore[arg-type]
    )


def field_of(error: ClocheError) -> str:
    """The control whose value the error is about, so the message appears beside it."""
    if error.message.startswith("--schedule"):
        return "cron"
    if isinstance(error, InvalidReference | NotFound):
        return "model"
    if isinstance(error, DestinationRefused):
        return "output" if error.message.startswith("batch output") else "input"
    return "form"


async def submit_job(request: Request) -> Response:
    """Queue a job: the batch service with the API's role, confinement and errors."""
    principal: Principal = request.scope[SESSION_KEY].principal
    form = await request.form()
    fields = {key: str(form.get(key, "")).strip() for key in EMPTY_FORM}
    settings = request.app.state.settings
    try:
        authorize(principal, Permission.DEPLOY)
        job = await asyncio.to_thread(
            service.submit,
            request.app.state.store,
            model_ref=fields["model"],
            spec=job_spec(fields),
            actor=principal.actor,
            places=Places.from_settings(settings),
        )
    except ClocheError as error:
        context = {"form": fields, "formats": FORMATS, "error": error, "field": field_of(error)}
        if is_htmx(request):
            return html(
                request, "_batch_form.html", context, status=error.http_status, headers=FORM_SWAP
            )
        return html(request, "batch_form_page.html", context, status=error.http_status)
    target = f"/console/batch/{job.id}"
    if is_htmx(request):
        return Response(status_code=200, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


async def _act(request: Request, action: str) -> Response:
    principal: Principal = request.scope[SESSION_KEY].principal
    store = request.app.state.store
    job_id = request.path_params["job_id"]
    call = service.cancel if action == "cancel" else service.request_resume
    try:
        authorize(principal, Permission.DEPLOY)
        job = await asyncio.to_thread(call, store, job_id, actor=principal.actor)
    except ClocheError as error:
        job = await asyncio.to_thread(service.get_job, store, job_id)  # NotFound: error page
        context = _job_context(principal, job, action_error=error)
        return page(
            request, "batch_job.html", "_batch_job_main.html", context, status=error.http_status
        )
    if not is_htmx(request):
        return RedirectResponse(f"/console/batch/{job.id}", status_code=303)
    done = "cancel requested" if action == "cancel" else "queued to resume"
    return html(request, "_batch_job_main.html", _job_context(principal, job, notice=done))


async def cancel_job(request: Request) -> Response:
    return await _act(request, "cancel")


async def resume_job(request: Request) -> Response:
    return await _act(request, "resume")


ROUTES = [
    Route("/batch", list_jobs, methods=["GET"]),
    Route("/batch", submit_job, methods=["POST"]),
    Route("/batch/{job_id}", show_job, methods=["GET"]),
    Route("/batch/{job_id}/errors", show_error_rows, methods=["GET"]),
    Route("/batch/{job_id}/cancel", cancel_job, methods=["POST"]),
    Route("/batch/{job_id}/resume", resume_job, methods=["POST"]),
]
