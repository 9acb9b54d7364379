"""Batch jobs and their schedules. Jobs sent here run in the background of `cloche up`."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Request, Response
from pydantic import BaseModel, Field

from cloche.api.deps import Reader, SettingsDep, StoreDep, require
from cloche.api.paging import PageParams, items
from cloche.api.routes import make_router
from cloche.auth.roles import Permission, Principal
from cloche.batch import listing, schedules, service
from cloche.batch.entities import BatchJob, BatchSchedule
from cloche.batch.error_rows import ErrorRow, page_error_rows
from cloche.batch.places import Places
from cloche.batch.spec import DEFAULT_CHUNK_ROWS, DEFAULT_MAX_ERROR_RATE, JobSpec

router = make_router("", "batch")
Deployer = Annotated[Principal, Depends(require(Permission.DEPLOY))]


class JobRequest(BaseModel):
    model: str = Field(description="model reference: name, name:3 or name@prod")
    input: str = Field(
        description="an absolute file, folder or glob inside CLOCHE_BATCH__ALLOWED_DIRS, or "
        "an object-store URL under a prefix of CLOCHE_BATCH__ALLOWED_URLS"
    )
    output: str = Field(
        description="an absolute folder inside CLOCHE_BATCH__ALLOWED_DIRS (a schedule adds "
        "one per run)"
    )
    input_format: Literal["parquet", "jsonl", "csv"] | None = None
    output_format: Literal["parquet", "jsonl", "csv"] = "parquet"
    id_column: str | None = None
    passthrough: list[str] = []
    workers: int = Field(default=0, ge=0, description="worker processes; 0: one per core")
    chunk_rows: int = Field(default=DEFAULT_CHUNK_ROWS, ge=1)
    max_error_rate: float = Field(default=DEFAULT_MAX_ERROR_RATE, ge=0, le=1)
    overwrite: bool = False
    engine: Literal["local", "ray"] = Field(
        default="local", description="ray: on the server's CLOCHE_BATCH__RAY_ADDRESS cluster"
    )

    def spec(self) -> JobSpec:
        return JobSpec.from_dict(self.model_dump(exclude={"model"}))


class ScheduleRequest(JobRequest):
    cron: str = Field(description='five cron fields in UTC, e.g. "0 6 * * 1" (Mondays 06:00)')


@router.post("/batch-jobs", status_code=201)
def submit_job(
    principal: Deployer, store: StoreDep, settings: SettingsDep, body: JobRequest
) -> BatchJob:
    """Queue a batch job; `cloche up` runs it in the background."""
    return service.submit(
        store,
        model_ref=body.model,
        spec=body.spec(),
        actor=principal.actor,
        places=Places.from_settings(settings),
    )


@router.get("/batch-jobs")
def list_jobs(
    _: Reader,
    store: StoreDep,
    page: PageParams,
    request: Request,
    response: Response,
    state: str | None = None,
    schedule_id: str | None = None,
) -> list[BatchJob]:
    """List batch jobs, newest first. Sort keys: created (default, newest first), state."""
    jobs = listing.page_jobs(store, page, state=state, schedule_id=schedule_id)
    return items(jobs, request, response)


@router.get("/batch-jobs/{job_id}")
def get_job(_: Reader, store: StoreDep, job_id: str) -> BatchJob:
    """Show a batch job with its progress."""
    return service.get_job(store, job_id)


@router.get("/batch-jobs/{job_id}/errors")
def list_error_rows(
    _: Reader, store: StoreDep, job_id: str, page: PageParams, request: Request, response: Response
) -> list[ErrorRow]:
    """The job's bad rows in input order: row number, reason and inputs (paged)."""
    return items(page_error_rows(store, job_id, page), request, response)


@router.post("/batch-jobs/{job_id}/cancel")
def cancel_job(principal: Deployer, store: StoreDep, job_id: str) -> BatchJob:
    """Cancel a job; a running one stops after its current chunk."""
    return service.cancel(store, job_id, actor=principal.actor)


@router.post("/batch-jobs/{job_id}/resume", status_code=202)
def resume_job(principal: Deployer, store: StoreDep, job_id: str) -> BatchJob:
    """Queue a stopped job again; it continues from its last finished chunk."""
    return service.request_resume(store, job_id, actor=principal.actor)


@router.post("/batch-schedules", status_code=201)
def create_schedule(
    principal: Deployer, store: StoreDep, settings: SettingsDep, body: ScheduleRequest
) -> BatchSchedule:
    """Run a batch job on a cron schedule, each run into its own dated folder."""
    return schedules.create_schedule(
        store,
        model_ref=body.model,
        spec=JobSpec.from_dict(body.model_dump(exclude={"model", "cron"})),
        cron=body.cron,
        places=Places.from_settings(settings),
        actor=principal.actor,
    )


@router.get("/batch-schedules")
def list_schedules(_: Reader, store: StoreDep) -> list[BatchSchedule]:
    """List batch schedules."""
    return schedules.list_schedules(store)


@router.get("/batch-schedules/{schedule_id}")
def get_schedule(_: Reader, store: StoreDep, schedule_id: str) -> BatchSchedule:
    """Show a schedule with its recent runs."""
    return schedules.get_schedule(store, schedule_id)


@router.post("/batch-schedules/{schedule_id}/pause")
def pause_schedule(principal: Deployer, store: StoreDep, schedule_id: str) -> BatchSchedule:
    """Stop queueing runs until resumed."""
    return schedules.set_enabled(store, schedule_id, False, actor=principal.actor)


@router.post("/batch-schedules/{schedule_id}/resume")
def resume_schedule(principal: Deployer, store: StoreDep, schedule_id: str) -> BatchSchedule:
    """Queue runs again from the next scheduled time."""
    return schedules.set_enabled(store, schedule_id, True, actor=principal.actor)


@router.delete("/batch-schedules/{schedule_id}", status_code=204)
def delete_schedule(principal: Deployer, store: StoreDep, schedule_id: str) -> Response:
    """Delete a schedule; its past runs stay listed."""
    schedules.delete_schedule(store, schedule_id, actor=principal.actor)
    return Response(status_code=204)
