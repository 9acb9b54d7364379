"""When a pipeline schedule fires: cron arithmetic, catch-up and max-concurrent, given "now".

Pure functions: the service (``schedules.py``) reads the schedule and its unfinished runs, asks
``plan`` what to do at ``now``, and writes the answer. Times are UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cloche import audit
from cloche.errors import InvalidInput

MAX_CATCH_UP = 24  # missed fire times run by --catch-up at most; older ones are skipped
_CRON_HINT = 'five fields, minute hour day month weekday, in UTC: "0 6 * * 1" is Mondays 06:00'


def check_cron(cron: str) -> str:
    from croniter import croniter

    text = " ".join(cron.split())
    if len(text.split(" ")) != 5 or not croniter.is_valid(text):
        raise InvalidInput(f"--cron {cron!r} is not a cron expression", hint=_CRON_HINT)
    try:  # valid fields can still name no day at all, e.g. February 31st
        croniter(text, datetime(2000, 1, 1)).get_next(datetime)
    except ValueError:
        raise InvalidInput(f"--cron {cron!r} names no time that exists", hint=_CRON_HINT) from None
    return text


def next_after(cron: str, after: datetime) -> datetime:
    """The first fire time strictly after ``after``."""
    from croniter import croniter

    return croniter(cron, audit.as_utc(after)).get_next(datetime)  # type: ignore[no-any-return]


def first_fire(cron: str, *, now: datetime, start: datetime | None) -> datetime:
    """The first fire time: after ``now``, and at or after ``start`` when that is later."""
    if start is not None and audit.as_utc(start) > audit.as_utc(now):
        return next_after(cron, audit.as_utc(start) - timedelta(seconds=1))
    return next_after(cron, now)


def due_times(
    cron: str, since: datetime, until: datetime, *, limit: int
) -> tuple[list[datetime], bool]:
    """The latest ``limit`` fire times from ``since`` to ``until`` (both included), oldest
    first, and whether older ones were left out. Walks back from ``until``, so a schedule
    down for a year costs ``limit`` steps, not a year of them."""
    from croniter import croniter

    since, until = audit.as_utc(since), audit.as_utc(until)
    if since > until:
        return [], False
    back = croniter(cron, until + timedelta(seconds=1))
    found: list[datetime] = []
    while True:
        moment: datetime = back.get_prev(datetime)
        if moment < since:
            return found[::-1], False
        if len(found) == limit:
            return found[::-1], True
        found.append(moment)


@dataclass(frozen=True)
class ScheduleState:
    cron: str
    next_run_at: datetime
    end_at: datetime | None = None
    catch_up: bool = False
    max_runs: int | None = None
    runs_made: int = 0
    max_concurrent: int | None = None


@dataclass(frozen=True)
class Plan:
    fire: list[datetime] = field(default_factory=list)  # a run for each, oldest first
    skipped: list[str] = field(default_factory=list)  # why each fire time not run was skipped
    next_run_at: datetime | None = None  # None: the schedule is over

    @property
    def note(self) -> str:
        return "; ".join(self.skipped)


def plan(state: ScheduleState, *, now: datetime, unfinished: int) -> Plan:
    """What to queue at ``now`` for a schedule whose ``unfinished`` runs have not ended.

    Without catch-up only the latest due fire time runs (earlier missed ones are skipped);
    with it each missed one runs, the latest ``MAX_CATCH_UP``. A fire time while
    ``max_concurrent`` runs are unfinished is skipped.
    """
    if audit.as_utc(state.next_run_at) > audit.as_utc(now):
        return Plan(next_run_at=state.next_run_at)
    until = min(now, state.end_at) if state.end_at is not None else now
    limit = MAX_CATCH_UP if state.catch_up else 1
    times, older = due_times(state.cron, state.next_run_at, until, limit=limit)
    skipped = []
    if older:
        why = f"more than {MAX_CATCH_UP} missed" if state.catch_up else "missed (no --catch-up)"
        skipped.append(f"fire times before {_stamp(times[0])} skipped: {why}")
    left = None if state.max_runs is None else state.max_runs - state.runs_made
    fire: list[datetime] = []
    for moment in times:
        if left is not None and len(fire) >= left:
            break
        if state.max_concurrent is not None and unfinished >= state.max_concurrent:
            skipped.append(
                f"{_stamp(moment)} skipped: {unfinished} runs of this schedule unfinished "
                f"(--max-concurrent {state.max_concurrent})"
            )
            continue
        fire.append(moment)
        unfinished += 1
    return Plan(fire, skipped, _next(state, now, made=state.runs_made + len(fire)))


def _next(state: ScheduleState, now: datetime, *, made: int) -> datetime | None:
    if state.max_runs is not None and made >= state.max_runs:
        return None
    following = next_after(state.cron, max(audit.as_utc(now), audit.as_utc(state.next_run_at)))
    if state.end_at is not None and following > audit.as_utc(state.end_at):
        return None
    return following


def _stamp(moment: datetime) -> str:
    return audit.as_utc(moment).strftime("%Y-%m-%d %H:%M UTC")
