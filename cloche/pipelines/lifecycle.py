"""Stopping and retrying pipeline runs.

A cancel marks the run ``cancelled`` in the store at once; the server's process running it
notices within ``server_runs.WATCH_S`` and kills itself with any step process it forked
(``stop_if_cancelled``). Its steps not yet ended are recorded ``cancelled`` when the run is
cancelled and again once its process is gone (``finish_cancelled``), so a step that raced the
cancel never stays ``running``.

A retry queues a failed or cancelled run again for the server: the runner resumes it, so the
steps that succeeded are not run again and the others get a new attempt.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloche import audit
from cloche.batch.service import runner_alive
from cloche.errors import RunStateConflict
from cloche.pipelines import records
from cloche.pipelines.entities import PipelineRun
from cloche.pipelines.graph import PipelineGraph
from cloche.store.store import Store
from cloche.store.tables import PipelineRow, PipelineRunRow, PipelineStepRow, utcnow

CANCELLABLE = frozenset({"queued", "pending", "running", "waiting"})
RETRYABLE = frozenset({"failed", "cancelled"})
OPEN_STEP_STATES = ("pending", "running", "waiting")


def cancel_run(store: Store, run_id: str, *, actor: str) -> PipelineRun:
    """Cancel a run that has not ended; RunStateConflict (409) for one that has."""
    with store.transaction() as session:
        row = records.find(session, run_id)
        if row.state not in CANCELLABLE:
            raise RunStateConflict(
                f"pipeline run {row.id} already ended ({row.state}): there is nothing to cancel",
                hint=f"`cloche pipelines runs retry {row.id}` runs a failed or cancelled one again",
            )
        before = row.state
        row.state, row.error, row.ended_at = "cancelled", f"cancelled by {actor}", utcnow()
        cancel_open_steps(session, row)
        audit.record(
            session,
            actor=actor,
            action="pipeline.cancel",
            resource_type="pipeline_run",
            resource=row.id,
            before={"state": before},
            after={"state": "cancelled"},
        )
        run_id = row.id
    return records.get_run(store, run_id)


def retry_run(store: Store, run_id: str, *, actor: str) -> PipelineRun:
    """Queue a failed or cancelled run again for the server; finished steps are kept."""
    with store.transaction() as session:
        row = records.find(session, run_id)
        if row.state not in RETRYABLE:
            raise RunStateConflict(
                f"pipeline run {row.id} is {row.state}: only a failed or cancelled run is retried",
                hint=f"`cloche pipelines runs cancel {row.id}` stops one that has not ended",
            )
        if row.pipeline_version is None:
            row.pipeline_version = _registered_version(session, row)
        before = row.state
        row.state, row.error, row.ended_at, row.runner = "queued", "", None, None
        audit.record(
            session,
            actor=actor,
            action="pipeline.retry",
            resource_type="pipeline_run",
            resource=row.id,
            before={"state": before},
            after={"state": "queued"},
        )
        run_id = row.id
    return records.get_run(store, run_id)


def finish_cancelled(store: Store) -> list[str]:
    """Cancelled runs whose process has gone: steps it left open are recorded cancelled."""
    finished = []
    with store.transaction() as session:
        query = select(PipelineRunRow).where(
            PipelineRunRow.state == "cancelled", PipelineRunRow.runner.is_not(None)
        )
        for row in session.scalars(query):
            if runner_alive(row):
                continue
            cancel_open_steps(session, row)
            row.runner = None
            finished.append(row.id)
    return finished


def cancel_open_steps(session: Session, row: PipelineRunRow) -> None:
    """Each step's last attempt still open, and each step never started, as cancelled."""
    stamp = utcnow()
    query = select(PipelineStepRow).where(PipelineStepRow.run_id == row.id)
    latest: dict[tuple[str, int], PipelineStepRow] = {}
    for step in session.scalars(query.order_by(PipelineStepRow.attempt)):
        latest[(step.step, step.iteration)] = step
    for step in latest.values():
        if step.state in OPEN_STEP_STATES:
            step.state, step.ended_at = "cancelled", stamp
            step.error = step.error or "stopped: the run was cancelled"
    started = {name for name, _ in latest}
    for task in PipelineGraph.model_validate(row.graph).tasks:
        if task.id not in started:
            session.add(
                PipelineStepRow(
                    run_id=row.id,
                    step=task.id,
                    iteration=-1,
                    attempt=1,
                    state="cancelled",
                    error="not run: the run was cancelled",
                    started_at=stamp,
                    ended_at=stamp,
                )
            )


def _registered_version(session: Session, row: PipelineRunRow) -> int:
    """The registered version with the run's source: the server can run only what it holds."""
    query = (
        select(PipelineRow.version)
        .where(PipelineRow.name == row.pipeline, PipelineRow.source_hash == row.source_hash)
        .order_by(PipelineRow.version.desc())
        .limit(1)
    )
    version = session.scalars(query).first()
    if version is None:
        raise RunStateConflict(
            f"pipeline run {row.id} was run from a file, and the server holds no registered "
            f"version of {row.pipeline!r} with its source",
            hint="register that file (`cloche pipelines register FILE.py`), or run it again "
            "with `cloche pipelines run FILE.py`",
        )
    return int(version)
