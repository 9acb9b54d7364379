"""Batch schedules: the list, pausing and resuming one, and creating one from the job form
plus a cron: the schedules service the API's route calls, with its role, places and errors."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from cloche.auth.roles import Permission, Principal, allows, authorize
from cloche.batch import schedules
from cloche.batch.places import Places
from cloche.errors import ClocheError

from ..render import SESSION_KEY, html, is_htmx, page
from .batch import EMPTY_FORM, FORMATS, field_of, job_spec, principal_of
from .forms import form_fields, go_to

SCHEDULE_FORM = {"cron": "", **EMPTY_FORM}
FORM_SWAP = {"HX-Retarget": "#batch-schedule-form", "HX-Reswap": "outerHTML"}


async def list_schedules(request: Request, **extra: Any) -> Response:
    principal = principal_of(request)
    found = await asyncio.to_thread(schedules.list_schedules, request.app.state.store)
    context = {
        "schedules": found,
        "can_run": allows(principal, Permission.DEPLOY),
        "form": SCHEDULE_FORM,
        "formats": FORMATS,
        "scheduling": True,
        **extra,
    }
    return page(request, "batch_schedules.html", "_batch_schedules.html", context)


async def switch_schedule(request: Request) -> Response:
    """Pause or resume a schedule: the schedules service with the API's role and errors."""
    principal: Principal = request.scope[SESSION_KEY].principal
    schedule_id = request.path_params["schedule_id"]
    enabled = request.url.path.endswith("/resume")
    try:
        authorize(principal, Permission.DEPLOY)
        await asyncio.to_thread(
            schedules.set_enabled,
            request.app.state.store,
            schedule_id,
            enabled,
            actor=principal.actor,
        )
    except ClocheError as error:
        response = await list_schedules(request, action_error=error)
        response.status_code = error.http_status
        return response
    if not is_htmx(request):
        return RedirectResponse("/console/batch/schedules", status_code=303)
    done = f"schedule {schedule_id} {'resumed' if enabled else 'paused'}"
    return await list_schedules(request, notice=done)


async def create_schedule(request: Request) -> Response:
    """A schedule from the form: `cloche batch run --schedule` through the same service."""
    principal: Principal = request.scope[SESSION_KEY].principal
    fields = await form_fields(request, tuple(SCHEDULE_FORM))
    try:
        authorize(principal, Permission.DEPLOY)
        await asyncio.to_thread(
            schedules.create_schedule,
            request.app.state.store,
            model_ref=fields["model"],
            spec=job_spec(fields),
            cron=fields["cron"],
            places=Places.from_settings(request.app.state.settings),
            actor=principal.actor,
        )
    except ClocheError as error:
        context = {
            "form": fields,
            "formats": FORMATS,
            "error": error,
            "field": field_of(error),
            "scheduling": True,
        }
        if is_htmx(request):
            return html(
                request, "_batch_form.html", context, status=error.http_status, headers=FORM_SWAP
            )
        return html(request, "batch_form_page.html", context, status=error.http_status)
    return go_to(request, "/console/batch/schedules")


ROUTES = [
    Route("/batch/schedules", list_schedules, methods=["GET"]),
    Route("/batch/schedules", create_schedule, methods=["POST"]),
    Route("/batch/schedules/{schedule_id}/pause", switch_schedule, methods=["POST"]),
    Route("/batch/schedules/{schedule_id}/resume", switch_schedule, methods=["POST"]),
]
