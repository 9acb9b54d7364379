"""Pipeline schedules: a registered pipeline queued at the times a cron expression names.

The scheduler of `cloche up` calls ``queue_due`` on every tick, on the lease holder only; a
schedule's fire times are also claimed with a compare-and-set on its ``next_run_at``, so two
ticks that overlap (a lease changing hands) still queue one run per fire time. Each run is a
registered run (``registered.queue_run``) whose trigger is ``schedule:ID``. When to fire is
decided in ``schedule_plan.py``, from a "now" passed in.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, computed_field
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from cloche import audit
from cloche.batch.ids import find_row
from cloche.errors import ClocheError, InvalidInput, ScheduleNotFound
from cloche.pipelines import registered
from cloche.pipelines.entities import FINAL_RUN_STATES, PipelineRun
from cloche.pipelines.schedule_plan import (
    ScheduleState,
    check_cron,
    first_fire,
    next_after,
    plan,
)
from cloche.pipelines.schedule_table import PipelineScheduleRow
from cloche.pipelines.values import run_params
from cloche.store.store import Store
from cloche.store.tables import PipelineRunRow, utcnow

log = logging.getLogger(__name__)
MAX_LIMIT = 1_000_000  # for --max-runs and --max-concurrent: within any database's integer


class PipelineSchedule(BaseModel):
    id: str
    pipeline: str
    cron: str
    params: dict[str, Any] = {}
    start_at: datetime | None = None
    end_at: datetime | None = None
    max_runs: int | None = None
    max_concurrent: int | None = None
    catch_up: bool = False
    enabled: bool = True
    next_run_at: datetime | None = Field(default=None, description="None: the schedule is over")
    runs_made: int = 0
    last_run_at: datetime | None = None
    note: str = Field(default="", description="why the last fire times were skipped, if any")
    created_at: datetime
    created_by: str = ""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def state(self) -> str:
        """active, paused, or finished (past its end or its max runs)."""
        return "finished" if self.next_run_at is None else "active" if self.enabled else "paused"


def trigger_of(schedule_id: str) -> str:
    return f"schedule:{schedule_id}"


def create_schedule(
    store: Store,
    pipeline: str,
    *,
    cron: str,
    params: dict[str, Any] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    max_runs: int | None = None,
    max_concurrent: int | None = None,
    catch_up: bool = False,
    actor: str = "local",
    now: datetime | None = None,
) -> PipelineSchedule:
    """Schedule runs of registered ``pipeline``; its parameters are checked now, against its
    newest version."""
    now = audit.as_utc(now or utcnow())
    cron = check_cron(cron)
    checked = run_params(registered.newest_graph(store, pipeline), params or {})
    given = {k: v for k, v in checked.items() if k in (params or {})}
    _check_limits(start, end, max_runs, max_concurrent, now=now)
    first = first_fire(cron, now=now, start=start)
    if end is not None and first > audit.as_utc(end):
        raise InvalidInput(
            f"--cron {cron!r} names no time between the start and --end",
            hint="move --end later or pick another --cron",
        )
    with store.transaction() as session:
        row = PipelineScheduleRow(
            id="ps_" + secrets.token_hex(5),
            pipeline=pipeline,
            cron=cron,
            params=given,
            start_at=start,
            end_at=end,
            max_runs=max_runs,
            max_concurrent=max_concurrent,
            catch_up=catch_up,
            enabled=True,
            next_run_at=first,
            runs_made=0,
            note="",
            created_by=actor,
        )
        session.add(row)
        session.flush()
        _audit(session, actor, "pipeline.schedule", row.id, {"pipeline": pipeline, "cron": cron})
        return _entity(row)


def _check_limits(
    start: datetime | None,
    end: datetime | None,
    max_runs: int | None,
    max_concurrent: int | None,
    *,
    now: datetime,
) -> None:
    if start is not None and end is not None and audit.as_utc(start) >= audit.as_utc(end):
        raise InvalidInput("--start must be before --end", hint="swap them, or drop one")
    if end is not None and audit.as_utc(end) <= now:
        raise InvalidInput(
            f"--end {audit.as_utc(end).isoformat()} has already passed",
            hint="give an end in the future (UTC), or none",
        )
    for flag, value in (("--max-runs", max_runs), ("--max-concurrent", max_concurrent)):
        if value is not None and not 1 <= value <= MAX_LIMIT:
            raise InvalidInput(
                f"{flag} must be from 1 to {MAX_LIMIT}, not {value}", hint=f"or leave {flag} out"
            )


def list_schedules(store: Store, *, pipeline: str | None = None) -> list[PipelineSchedule]:
    query = select(PipelineScheduleRow).order_by(PipelineScheduleRow.created_at)
    if pipeline is not None:
        query = query.where(PipelineScheduleRow.pipeline == pipeline)
    with store.transaction() as session:
        return [_entity(row) for row in session.scalars(query)]


def get_schedule(store: Store, schedule_id: str) -> PipelineSchedule:
    with store.transaction() as session:
        return _entity(_row(session, schedule_id))


def set_enabled(
    store: Store, schedule_id: str, enabled: bool, *, actor: str = "local"
) -> PipelineSchedule:
    """Pause or resume; fire times missed while paused are skipped, even with catch-up."""
    with store.transaction() as session:
        row = _row(session, schedule_id)
        if enabled and not row.enabled and row.next_run_at is not None:
            row.next_run_at = next_after(row.cron, max(utcnow(), audit.as_utc(row.next_run_at)))
        row.enabled = enabled
        action = "pipeline.schedule.resume" if enabled else "pipeline.schedule.pause"
        _audit(session, actor, action, row.id)
        return _entity(row)


def delete_schedule(store: Store, schedule_id: str, *, actor: str = "local") -> str:
    """Delete the schedule; the runs it made stay. Returns its full id."""
    with store.transaction() as session:
        row = _row(session, schedule_id)
        found = row.id
        session.delete(row)
        _audit(session, actor, "pipeline.schedule.delete", found)
    return found


def queue_due(store: Store, *, now: datetime | None = None) -> list[PipelineRun]:
    """Queue the runs of every enabled schedule whose fire time has come at ``now``."""
    now = audit.as_utc(now or utcnow())
    with store.transaction() as session:
        due = session.scalars(
            select(PipelineScheduleRow).where(
                PipelineScheduleRow.enabled.is_(True),
                PipelineScheduleRow.next_run_at.is_not(None),
                PipelineScheduleRow.next_run_at <= now,
            )
        ).all()
        todo = [(_state(row), row.next_run_at, row.id, row.pipeline, row.params) for row in due]
        busy = {row.id: _unfinished(session, row.id) for row in due}
    queued: list[PipelineRun] = []
    for state, seen, schedule_id, pipeline, params in todo:
        decided = plan(state, now=now, unfinished=busy[schedule_id])
        if not _claim(store, schedule_id, seen, decided.next_run_at, len(decided.fire), now):
            continue  # another tick took these fire times
        if decided.skipped:
            log.warning("pipeline schedule %s: %s", schedule_id, decided.note)
        notes, failed = list(decided.skipped), 0
        for _ in decided.fire:
            try:
                queued.append(_queue(store, schedule_id, pipeline, params))
            except ClocheError as exc:  # e.g. the pipeline was deleted: said on the schedule
                log.warning("pipeline schedule %s could not queue its run: %s", schedule_id, exc)
                notes.append(f"could not queue a run: {exc.message}")
                failed += 1
        _set_note(store, schedule_id, "; ".join(notes), failed=failed)
    return queued


def _queue(store: Store, schedule_id: str, pipeline: str, params: dict[str, Any]) -> PipelineRun:
    trigger = trigger_of(schedule_id)
    return registered.queue_run(store, pipeline, dict(params), actor=trigger, trigger=trigger)


def _claim(
    store: Store,
    schedule_id: str,
    seen: datetime | None,
    following: datetime | None,
    made: int,
    now: datetime,
) -> bool:
    """Move the schedule on from ``seen`` to ``following``, if no one else did first. The
    update is the transaction's first statement, so SQLite takes its write lock on a fresh
    view rather than failing on a stale one."""
    table = PipelineScheduleRow
    values: dict[str, Any] = {"next_run_at": following, "runs_made": table.runs_made + made}
    if made:
        values["last_run_at"] = now
    with store.transaction() as session:
        moved = session.execute(
            update(table).where(table.id == schedule_id, table.next_run_at == seen).values(values)
        )
        return moved.rowcount == 1  # type: ignore[attr-defined, no-any-return]


def _set_note(store: Store, schedule_id: str, note: str, *, failed: int) -> None:
    """Say what was skipped or failed; a run that could not be queued was not made."""
    with store.transaction() as session:
        row = session.get(PipelineScheduleRow, schedule_id)
        if row is not None:
            row.note, row.runs_made = note, row.runs_made - failed


def _unfinished(session: Session, schedule_id: str) -> int:
    count = session.scalar(
        select(func.count())
        .select_from(PipelineRunRow)
        .where(
            PipelineRunRow.trigger == trigger_of(schedule_id),
            PipelineRunRow.state.not_in(FINAL_RUN_STATES),
        )
    )
    return int(count or 0)


def _state(row: PipelineScheduleRow) -> ScheduleState:
    assert row.next_run_at is not None
    return ScheduleState(
        cron=row.cron,
        next_run_at=audit.as_utc(row.next_run_at),
        end_at=audit.as_utc(row.end_at) if row.end_at else None,
        catch_up=row.catch_up,
        max_runs=row.max_runs,
        runs_made=row.runs_made,
        max_concurrent=row.max_concurrent,
    )


def _row(session: Session, schedule_id: str) -> PipelineScheduleRow:
    missing = ScheduleNotFound(
        f"pipeline schedule {schedule_id!r} does not exist",
        hint="`cloche pipelines schedules list` shows the schedules",
    )
    return find_row(
        session, PipelineScheduleRow, PipelineScheduleRow.id, schedule_id, missing=missing
    )


def _audit(
    session: Session, actor: str, action: str, resource: str, after: dict[str, Any] | None = None
) -> None:
    audit.record(
        session,
        actor=actor,
        action=action,
        resource_type="pipeline_schedule",
        resource=resource,
        after=after,
    )


def _entity(row: PipelineScheduleRow) -> PipelineSchedule:
    def utc(value: datetime | None) -> datetime | None:
        return audit.as_utc(value) if value is not None else None

    return PipelineSchedule(
        id=row.id,
        pipeline=row.pipeline,
        cron=row.cron,
        params=row.params,
        start_at=utc(row.start_at),
        end_at=utc(row.end_at),
        max_runs=row.max_runs,
        max_concurrent=row.max_concurrent,
        catch_up=row.catch_up,
        enabled=row.enabled,
        next_run_at=utc(row.next_run_at),
        runs_made=row.runs_made,
        last_run_at=utc(row.last_run_at),
        note=row.note,
        created_at=audit.as_utc(row.created_at),
        created_by=row.created_by,
    )


def recent_runs(store: Store, schedule_id: str, *, limit: int = 20) -> list[PipelineRun]:
    """The newest runs the schedule made."""
    from cloche.pipelines.records import entity

    with store.transaction() as session:
        found = _row(session, schedule_id).id
        rows = session.scalars(
            select(PipelineRunRow)
            .where(PipelineRunRow.trigger == trigger_of(found))
            .order_by(PipelineRunRow.created_at.desc())
            .limit(limit)
        )
        return [entity(session, row, steps=False) for row in rows]
