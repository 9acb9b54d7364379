"""Recurring batch jobs: a cron expression (UTC) and a job spec; each run gets its own folder.

The scheduler in `cloche up` calls ``queue_due`` on every tick; the runner then runs the queued
jobs. A schedule names a model reference, not a version, so ``churn@prod`` scores with whatever
version the alias points to when the run starts.

Every run is a job the server runs for someone, so a schedule's paths are confined (see
cloche/batch/places.py) when it is saved, when each run is queued, and when the run executes.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from pathlib import PurePosixPath

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloche import audit
from cloche.batch import service
from cloche.batch.entities import BatchJob, BatchSchedule
from cloche.batch.ids import find_row
from cloche.batch.places import Places
from cloche.batch.plan import check_spec
from cloche.batch.spec import JobSpec
from cloche.errors import ClocheError, InvalidInput, ScheduleNotFound
from cloche.registry.refs import parse_ref
from cloche.registry.service import resolve_version_row
from cloche.store.store import Store
from cloche.store.tables import BatchScheduleRow, utcnow

HISTORY = 20  # runs shown with a schedule
log = logging.getLogger(__name__)


def next_run(cron: str, after: datetime) -> datetime:
    """The first time after ``after`` that ``cron`` names, in UTC."""
    from croniter import CroniterBadCronError, croniter

    try:
        return croniter(cron, audit.as_utc(after)).get_next(datetime)  # type: ignore[no-any-return]
    except (CroniterBadCronError, ValueError, KeyError) as exc:
        raise InvalidInput(
            f"--schedule {cron!r} is not a cron expression: {exc}",
            hint='five fields, minute hour day month weekday, in UTC: "0 6 * * 1" is Mondays 06:00',
        ) from exc


def run_folder(base: str, at: datetime) -> str:
    """Where one run writes: the schedule's output folder plus the run's UTC time."""
    return _join(base, audit.as_utc(at).strftime("%Y-%m-%dT%H%MZ"))


def run_folders(base: str) -> str:
    """Where the runs write, as shown to people: ``/data/out/<run time>``."""
    return _join(base, "<run time>")


def _join(base: str, stamp: str) -> str:
    # One separator whatever the user typed ('out/', 'out//'): no '//' in paths people read.
    return str(PurePosixPath(base) / stamp) if "://" in base else f"{base.rstrip('/')}/{stamp}"


def create_schedule(
    store: Store, *, model_ref: str, spec: JobSpec, cron: str, places: Places, actor: str = "local"
) -> BatchSchedule:
    """Save a schedule whose paths lie in ``places`` (the server's: `cloche up` runs it)."""
    check_spec(spec)
    first = next_run(cron, utcnow())
    places.check_spec(spec)
    with store.transaction() as session:
        resolve_version_row(session, parse_ref(model_ref))  # refuse a model that is not there
        row = BatchScheduleRow(
            id="bs_" + secrets.token_hex(5),
            model_ref=model_ref,
            cron=cron,
            spec=spec.to_dict(),
            enabled=True,
            next_run_at=first,
            created_by=actor,
        )
        session.add(row)
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="batch.schedule",
            resource_type="batch_schedule",
            resource=row.id,
            after={"model": model_ref, "cron": cron, "output": spec.output},
        )
        return _entity(session, row)


def _entity(session: Session, row: BatchScheduleRow, *, history: bool = False) -> BatchSchedule:
    return BatchSchedule(
        id=row.id,
        model_ref=row.model_ref,
        cron=row.cron,
        spec=row.spec,
        enabled=row.enabled,
        next_run_at=audit.as_utc(row.next_run_at),
        last_run_at=audit.as_utc(row.last_run_at) if row.last_run_at else None,
        created_at=audit.as_utc(row.created_at),
        created_by=row.created_by,
        history=_history(session, row.id) if history else [],
    )


def _history(session: Session, schedule_id: str) -> list[BatchJob]:
    from cloche.store.tables import BatchJobRow

    rows = session.scalars(
        select(BatchJobRow)
        .where(BatchJobRow.schedule_id == schedule_id)
        .order_by(BatchJobRow.created_at.desc())
        .limit(HISTORY)
    )
    return [service.entity(r) for r in rows]


def _row(session: Session, schedule_id: str) -> BatchScheduleRow:
    missing = ScheduleNotFound(
        f"batch schedule {schedule_id!r} does not exist",
        hint="`cloche batch schedules list` shows the schedules",
    )
    return find_row(session, BatchScheduleRow, BatchScheduleRow.id, schedule_id, missing=missing)


def get_schedule(store: Store, schedule_id: str) -> BatchSchedule:
    with store.transaction() as session:
        return _entity(session, _row(session, schedule_id), history=True)


def list_schedules(store: Store) -> list[BatchSchedule]:
    with store.transaction() as session:
        rows = session.scalars(select(BatchScheduleRow).order_by(BatchScheduleRow.created_at))
        return [_entity(session, row) for row in rows]


def set_enabled(
    store: Store, schedule_id: str, enabled: bool, *, actor: str = "local"
) -> BatchSchedule:
    with store.transaction() as session:
        row = _row(session, schedule_id)
        row.enabled = enabled
        if enabled:  # runs missed while paused are skipped, not fired all at once
            row.next_run_at = next_run(row.cron, utcnow())
        action = "batch.schedule.resume" if enabled else "batch.schedule.pause"
        audit.record(
            session, actor=actor, action=action, resource_type="batch_schedule", resource=row.id
        )
        return _entity(session, row)


def delete_schedule(store: Store, schedule_id: str, *, actor: str = "local") -> None:
    """Delete the schedule; its past runs stay listed as jobs."""
    with store.transaction() as session:
        row = _row(session, schedule_id)
        found_id = row.id  # the full id, when a prefix was given
        session.delete(row)
        audit.record(
            session,
            actor=actor,
            action="batch.schedule.delete",
            resource_type="batch_schedule",
            resource=found_id,
        )


def queue_due(store: Store, *, places: Places, now: datetime | None = None) -> list[BatchJob]:
    """Queue one job for each enabled schedule whose time has come; advance its next run.

    A schedule that missed several times (the server was down) runs once, not once per miss.
    A run whose paths ``places`` no longer allows (the settings changed, a pattern matches a
    link now) is not queued; the warning says why, and the next run tries again.
    """
    now = now or utcnow()
    with store.transaction() as session:
        due = session.scalars(
            select(BatchScheduleRow).where(
                BatchScheduleRow.enabled.is_(True), BatchScheduleRow.next_run_at <= now
            )
        ).all()
        todo = [(r.id, r.model_ref, r.spec, audit.as_utc(r.next_run_at)) for r in due]
        for row in due:
            row.last_run_at = now
            row.next_run_at = next_run(row.cron, now)
    queued = []
    for schedule_id, model_ref, spec_data, at in todo:
        spec = JobSpec.from_dict(spec_data)
        run_spec = JobSpec.from_dict(spec.to_dict() | {"output": run_folder(spec.output, at)})
        try:
            queued.append(
                service.submit(
                    store,
                    model_ref=model_ref,
                    spec=run_spec,
                    actor=f"schedule:{schedule_id}",
                    schedule_id=schedule_id,
                    places=places,
                )
            )
        except ClocheError as exc:  # e.g. the model was deleted: the next run tries again
            log.warning("batch schedule %s could not queue its run: %s", schedule_id, exc)
    return queued
