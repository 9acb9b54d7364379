"""Pipeline runs: the list (filtered by state or pipeline), a run's page (its graph by state,
refreshed while it runs; a timeline of attempts; approvals), a step's attempts with their logs
and artifacts, and the actions: approve or reject a waiting step, cancel, retry."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from cloche.auth.roles import Permission, Principal, allows
from cloche.errors import BadRequest, ClocheError
from cloche.pipelines import approvals, lifecycle, records
from cloche.pipelines.entities import RUN_STATES, PipelineRun
from cloche.registry.refs import check_name
from cloche.store.paging import Page as StorePage
from cloche.store.paging import PageRequest

from .. import run_view
from ..paging import fetch_page, parse_listing
from ..render import html, is_htmx, page
from .pipelines import principal_of

SORTS = ("-created", "created", "state", "-state")
SORT_KEYS = {"created": "created", "state": "state"}  # console sort -> page_runs sort
FILTER_STATES = RUN_STATES
ACTIONS = ("cancel", "retry")


def _filters(request: Request) -> dict[str, str]:
    """``?state=`` and ``?pipeline=`` checked; empty means any."""
    state = request.query_params.get("state", "")
    if state and state not in FILTER_STATES:
        raise BadRequest(f"no run state {state!r}", hint=f"one of: {', '.join(FILTER_STATES)}")
    pipeline = request.query_params.get("pipeline", "")
    if pipeline:
        check_name(pipeline)
    return {"state": state, "pipeline": pipeline}


async def list_runs(request: Request) -> Response:
    principal_of(request)
    listing = parse_listing(request.query_params, sorts=SORTS, default="-created")
    filters = _filters(request)
    store = request.app.state.store

    def ask(asked: PageRequest) -> StorePage[PipelineRun]:
        return records.page_runs(
            store, asked, pipeline=filters["pipeline"] or None, state=filters["state"] or None
        )

    rows = await asyncio.to_thread(fetch_page, listing, ask, sorts=SORT_KEYS)
    context = {
        "page": rows,
        "sorts": SORTS,
        "states": FILTER_STATES,
        "filters": filters,
    }
    return page(request, "runs.html", "_runs_table.html", context)


def _run_context(principal: Principal, run: PipelineRun, **extra: Any) -> dict[str, Any]:
    return {
        "run": run,
        "svg": run_view.run_graph(run),
        "timeline": run_view.timeline(run, datetime.now(UTC)),
        "approvals": run_view.approvals(run),
        "duration": run_view.duration,
        "can_deploy": allows(principal, Permission.DEPLOY),
        "action_error": None,
        "decision_error": None,
        **extra,
    }


async def show_run(request: Request) -> Response:
    principal = principal_of(request)
    run = await asyncio.to_thread(
        records.get_run, request.app.state.store, request.path_params["run_id"]
    )
    return page(request, "run.html", "_run_main.html", _run_context(principal, run))


async def show_step(request: Request) -> Response:
    principal_of(request)
    run_id, attempts = await asyncio.to_thread(
        records.step_attempts,
        request.app.state.store,
        request.path_params["run_id"],
        request.path_params["step"],
    )
    context = {
        "run_id": run_id,
        "step": request.path_params["step"],
        "attempts": attempts,
        "artifacts": run_view.artifacts,
    }
    return html(request, "run_step.html", context)


async def decide(request: Request) -> Response:
    """Approve or reject a waiting step: ``cloche pipelines approve``'s service and role."""
    principal = principal_of(request, Permission.DEPLOY)  # before the body is read
    run_id, step = request.path_params["run_id"], request.path_params["step"]
    form = await request.form()
    choice, comment = str(form.get("decision", "")), str(form.get("comment", "")).strip()
    store = request.app.state.store
    try:
        if choice not in ("approve", "reject"):
            raise BadRequest("choose approve or reject", hint="press one of the two buttons")
        if len(comment) > 2000:
            raise BadRequest("the comment is longer than 2000 characters", hint="shorten it")
        run = await asyncio.to_thread(
            approvals.decide,
            store,
            run_id,
            step,
            approved=choice == "approve",
            actor=principal.actor,
            comment=comment,
        )
    except ClocheError as error:
        return await _refused(request, principal, run_id, error, decision_error=error, step=step)
    verb = "approved" if choice == "approve" else "rejected"
    return _done(request, principal, run, f"Step {step} {verb}.")


async def act(request: Request) -> Response:
    """Cancel or retry the run: the lifecycle service, with the API's role."""
    principal = principal_of(request, Permission.DEPLOY)  # before the body is read
    run_id, action = request.path_params["run_id"], request.path_params["action"]
    store = request.app.state.store
    try:
        if action not in ACTIONS:
            raise BadRequest(f"no run action {action!r}", hint="cancel or retry")
        change = lifecycle.cancel_run if action == "cancel" else lifecycle.retry_run
        run = await asyncio.to_thread(change, store, run_id, actor=principal.actor)
    except ClocheError as error:
        return await _refused(request, principal, run_id, error, action_error=error)
    done = "cancelled" if action == "cancel" else "queued again"
    return _done(request, principal, run, f"Run {run.id} {done}.")


def _done(request: Request, principal: Principal, run: PipelineRun, notice: str) -> Response:
    if not is_htmx(request):  # post/redirect/get: a reload does not act again
        return RedirectResponse(f"/console/runs/{run.id}", status_code=303)
    return html(request, "_run_main.html", _run_context(principal, run, notice=notice))


async def _refused(
    request: Request, principal: Principal, run_id: str, error: ClocheError, **shown: Any
) -> Response:
    """The run again with the message beside the control that failed."""
    run = await asyncio.to_thread(records.get_run, request.app.state.store, run_id)
    context = _run_context(principal, run, **shown)
    template = "_run_main.html" if is_htmx(request) else "run.html"
    return html(request, template, context, status=error.http_status)


ROUTES = [
    Route("/runs", list_runs, methods=["GET"]),
    Route("/runs/{run_id}", show_run, methods=["GET"]),
    Route("/runs/{run_id}/steps/{step}", show_step, methods=["GET"]),
    Route("/runs/{run_id}/steps/{step}/decision", decide, methods=["POST"]),
    Route("/runs/{run_id}/{action}", act, methods=["POST"]),
]
