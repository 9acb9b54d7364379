"""What the batch service returns: plain data shared by the API and both SDK transports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

ACTIVE_STATES = frozenset({"queued", "running"})
FINAL_STATES = frozenset({"succeeded", "partially_succeeded", "failed", "cancelled"})


class BatchJob(BaseModel):
    id: str
    model_ref: str = Field(description="the reference as given, e.g. churn@prod")
    model_version: str = Field(description="the version it resolved to, e.g. churn:3")
    model_sha256: str
    state: str = Field(
        description="queued, running, succeeded, partially_succeeded, failed or cancelled"
    )
    spec: dict[str, Any]
    progress: dict[str, Any] = Field(
        default={}, description="rows_total, rows_done, error_rows, rows_per_s, eta_s, chunks"
    )
    message: str = ""
    cancel_requested: bool = False
    schedule_id: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    created_by: str = ""

    @property
    def output(self) -> str:
        return str(self.spec.get("output", ""))

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES


class BatchSchedule(BaseModel):
    id: str
    model_ref: str
    cron: str
    spec: dict[str, Any] = Field(description="the job spec; each run writes to output/<run time>")
    enabled: bool
    next_run_at: datetime
    last_run_at: datetime | None = None
    created_at: datetime
    created_by: str = ""
    history: list[BatchJob] = Field(default=[], description="the newest runs first")
