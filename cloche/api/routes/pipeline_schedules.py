"""Pipeline schedules: a registered pipeline queued by `cloche up` at the times a cron names."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Response
from pydantic import BaseModel, Field

from cloche.api.deps import Reader, StoreDep, require
from cloche.api.routes import make_router
from cloche.auth.roles import Permission, Principal
from cloche.pipelines import schedules
from cloche.pipelines.schedules import PipelineSchedule

router = make_router("", "pipelines")
Deployer = Annotated[Principal, Depends(require(Permission.DEPLOY))]


class PipelineScheduleRequest(BaseModel):
    pipeline: str = Field(description="a registered pipeline's name")
    cron: str = Field(description='five cron fields in UTC, e.g. "0 6 * * 1" (Mondays 06:00)')
    params: dict[str, Any] = Field(default={}, description="checked against the pipeline's")
    start: datetime | None = Field(default=None, description="no run before this")
    end: datetime | None = Field(default=None, description="no run after this")
    max_runs: int | None = Field(default=None, ge=1, le=schedules.MAX_LIMIT)
    max_concurrent: int | None = Field(
        default=None,
        ge=1,
        le=schedules.MAX_LIMIT,
        description="a fire time while this many runs are unfinished is skipped",
    )
    catch_up: bool = Field(default=False, description="run each missed fire time once (bounded)")


@router.post("/pipeline-schedules", status_code=201)
def create_schedule(
    principal: Deployer, store: StoreDep, body: PipelineScheduleRequest
) -> PipelineSchedule:
    """Run a registered pipeline on a cron schedule; each run's trigger is schedule:ID."""
    return schedules.create_schedule(
        store,
        body.pipeline,
        cron=body.cron,
        params=body.params,
        start=body.start,
        end=body.end,
        max_runs=body.max_runs,
        max_concurrent=body.max_concurrent,
        catch_up=body.catch_up,
        actor=principal.actor,
    )


@router.get("/pipeline-schedules")
def list_schedules(_: Reader, store: StoreDep) -> list[PipelineSchedule]:
    """List pipeline schedules."""
    return schedules.list_schedules(store)


@router.get("/pipeline-schedules/{schedule_id}")
def get_schedule(_: Reader, store: StoreDep, schedule_id: str) -> PipelineSchedule:
    """Show a schedule."""
    return schedules.get_schedule(store, schedule_id)


@router.post("/pipeline-schedules/{schedule_id}/pause")
def pause_schedule(principal: Deployer, store: StoreDep, schedule_id: str) -> PipelineSchedule:
    """Stop queueing runs."""
    return schedules.set_enabled(store, schedule_id, False, actor=principal.actor)


@router.post("/pipeline-schedules/{schedule_id}/resume")
def resume_schedule(principal: Deployer, store: StoreDep, schedule_id: str) -> PipelineSchedule:
    """Queue runs again from the next fire time; those missed while paused are skipped."""
    return schedules.set_enabled(store, schedule_id, True, actor=principal.actor)


@router.delete("/pipeline-schedules/{schedule_id}", status_code=204)
def delete_schedule(principal: Deployer, store: StoreDep, schedule_id: str) -> Response:
    """Delete a schedule; the runs it made stay."""
    schedules.delete_schedule(store, schedule_id, actor=principal.actor)
    return Response(status_code=204)
