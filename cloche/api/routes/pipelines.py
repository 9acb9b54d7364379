"""Registered pipelines and their runs: register, queue, list, show, logs, cancel, retry, approve.

Runs queued here are run by `cloche up`'s scheduler in processes of their own; the server never
imports a pipeline's source in its workers (a registration carries the graph the client built).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query, Request, Response
from pydantic import BaseModel, Field

from cloche.api.deps import Reader, StoreDep, require
from cloche.api.paging import PageParams, items
from cloche.api.routes import make_router
from cloche.auth.roles import Permission, Principal
from cloche.pipelines import approvals, lifecycle, records, registered
from cloche.pipelines.entities import PipelineRun, StepRecord
from cloche.pipelines.graph import PipelineGraph
from cloche.pipelines.registered import RegisteredPipeline

router = make_router("/pipelines", "pipelines")
Deployer = Annotated[Principal, Depends(require(Permission.DEPLOY))]
# A registered source is code the server runs (in a process with its store): as a pickle is.
Publisher = Annotated[Principal, Depends(require(Permission.PUBLISH))]
MAX_SOURCE_CHARS = 1_000_000


class RegisterRequest(BaseModel):
    source: str = Field(max_length=MAX_SOURCE_CHARS, description="the pipeline's Python file")
    file_name: str = Field(min_length=1, max_length=255, description="its name, e.g. weekly.py")
    graph: PipelineGraph = Field(description="the graph the file defines (Pipeline.graph)")


class RunRequest(BaseModel):
    params: dict[str, Any] = {}
    executor: str = Field(default="inprocess", description="inprocess or process")


class DecisionRequest(BaseModel):
    approved: bool = True
    comment: str = Field(default="", max_length=2000)


@router.get("")
def list_pipelines(_: Reader, store: StoreDep) -> list[RegisteredPipeline]:
    """List registered pipelines, each at its newest version."""
    return registered.list_registered(store)


@router.post("", status_code=201)
def register_pipeline(
    principal: Publisher, store: StoreDep, body: RegisterRequest
) -> RegisteredPipeline:
    """Register a pipeline's source (a new version only when its source hash changed). The
    server runs that source, so this needs a role that may publish code (publisher, admin)."""
    return registered.register_graph(
        store, body.graph, source=body.source, file_name=body.file_name, actor=principal.actor
    )


@router.get("/runs")
def list_runs(
    _: Reader,
    store: StoreDep,
    page: PageParams,
    request: Request,
    response: Response,
    pipeline: str | None = None,
    state: Annotated[str | None, Query(description="e.g. waiting: waiting for approval")] = None,
) -> list[PipelineRun]:
    """List runs, newest first (without their steps). Sort keys: created (default), state."""
    runs = records.page_runs(store, page, pipeline=pipeline, state=state)
    return items(runs, request, response)


@router.get("/runs/{run_id}")
def get_run(_: Reader, store: StoreDep, run_id: str) -> PipelineRun:
    """Show a run (its id or a unique prefix) with each step attempt."""
    return records.get_run(store, run_id)


@router.get("/runs/{run_id}/steps/{step}/logs")
def step_logs(_: Reader, store: StoreDep, run_id: str, step: str) -> list[StepRecord]:
    """Every attempt of a step (``name`` or ``name[i]``), with what it printed and its error."""
    return records.step_attempts(store, run_id, step)[1]


@router.post("/runs/{run_id}/cancel")
def cancel_run(principal: Deployer, store: StoreDep, run_id: str) -> PipelineRun:
    """Cancel a run that has not ended: its running step is stopped, the rest never start."""
    return lifecycle.cancel_run(store, run_id, actor=principal.actor)


@router.post("/runs/{run_id}/retry", status_code=202)
def retry_run(principal: Deployer, store: StoreDep, run_id: str) -> PipelineRun:
    """Queue a failed or cancelled run again; the steps that succeeded are not run again."""
    return lifecycle.retry_run(store, run_id, actor=principal.actor)


@router.post("/runs/{run_id}/steps/{step}/approve")
def decide_step(
    principal: Deployer, store: StoreDep, run_id: str, step: str, body: DecisionRequest
) -> PipelineRun:
    """Approve (or, with ``approved: false``, reject) an approval step waiting for a decision."""
    return approvals.decide(
        store, run_id, step, approved=body.approved, actor=principal.actor, comment=body.comment
    )


@router.post("/{name}/runs", status_code=202)
def queue_run(principal: Deployer, store: StoreDep, name: str, body: RunRequest) -> PipelineRun:
    """Queue a run of a registered pipeline's newest version; parameters are checked now."""
    return registered.queue_run(
        store, name, body.params, actor=principal.actor, executor=body.executor
    )
