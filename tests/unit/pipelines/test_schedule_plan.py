"""When a pipeline schedule fires, decided from a given "now": catch-up, skipped missed times,
max-concurrent, max-runs and the end."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cloche.errors import InvalidInput
from cloche.pipelines.schedule_plan import (
    MAX_CATCH_UP,
    ScheduleState,
    check_cron,
    due_times,
    first_fire,
    plan,
)

HOURLY = "0 * * * *"


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2030, 1, day, hour, minute, tzinfo=UTC)


def test_a_bad_cron_is_refused_with_an_example() -> None:
    with pytest.raises(InvalidInput) as err:
        check_cron("every monday")
    assert "not a cron expression" in err.value.message and "0 6 * * 1" in (err.value.hint or "")


def test_the_first_fire_time_is_after_now_or_at_the_start() -> None:
    assert first_fire(HOURLY, now=at(1, 5, 30), start=None) == at(1, 6)
    assert first_fire(HOURLY, now=at(1, 5, 30), start=at(2, 9)) == at(2, 9)
    assert first_fire(HOURLY, now=at(1, 5, 30), start=at(1, 1)) == at(1, 6)


def test_due_times_walk_back_from_now_and_say_when_older_ones_were_left_out() -> None:
    assert due_times(HOURLY, at(1, 6), at(1, 8, 30), limit=5) == (
        [at(1, 6), at(1, 7), at(1, 8)],
        False,
    )
    assert due_times(HOURLY, at(1, 6), at(1, 8, 30), limit=2) == ([at(1, 7), at(1, 8)], True)
    assert due_times(HOURLY, at(1, 9), at(1, 8, 30), limit=2) == ([], False)


def test_without_catch_up_only_the_latest_missed_time_runs() -> None:
    decided = plan(ScheduleState(HOURLY, next_run_at=at(1, 6)), now=at(1, 9, 10), unfinished=0)
    assert decided.fire == [at(1, 9)]
    assert decided.next_run_at == at(1, 10)
    assert "missed (no --catch-up)" in decided.note


def test_catch_up_runs_each_missed_time_once_bounded() -> None:
    state = ScheduleState(HOURLY, next_run_at=at(1, 6), catch_up=True)
    assert plan(state, now=at(1, 9, 10), unfinished=0).fire == [
        at(1, 6),
        at(1, 7),
        at(1, 8),
        at(1, 9),
    ]
    long_ago = ScheduleState(HOURLY, next_run_at=at(1, 0), catch_up=True)
    decided = plan(long_ago, now=at(5, 0), unfinished=0)
    assert len(decided.fire) == MAX_CATCH_UP and decided.fire[-1] == at(5, 0)
    assert f"more than {MAX_CATCH_UP} missed" in decided.note


def test_a_schedule_not_yet_due_keeps_its_next_time() -> None:
    decided = plan(ScheduleState(HOURLY, next_run_at=at(1, 6)), now=at(1, 5, 59), unfinished=0)
    assert decided.fire == [] and decided.next_run_at == at(1, 6)


def test_a_fire_time_while_max_concurrent_runs_are_unfinished_is_skipped_and_said() -> None:
    state = ScheduleState(HOURLY, next_run_at=at(1, 6), max_concurrent=1)
    decided = plan(state, now=at(1, 6, 1), unfinished=1)
    assert decided.fire == [] and decided.next_run_at == at(1, 7)
    assert "1 runs of this schedule unfinished (--max-concurrent 1)" in decided.note


def test_catch_up_counts_the_runs_it_queues_against_max_concurrent() -> None:
    state = ScheduleState(HOURLY, next_run_at=at(1, 6), catch_up=True, max_concurrent=2)
    decided = plan(state, now=at(1, 9, 1), unfinished=0)
    assert decided.fire == [at(1, 6), at(1, 7)]
    assert decided.note.count("skipped") == 2


def test_max_runs_ends_the_schedule() -> None:
    state = ScheduleState(HOURLY, next_run_at=at(1, 6), max_runs=3, runs_made=2, catch_up=True)
    decided = plan(state, now=at(1, 8, 1), unfinished=0)
    assert decided.fire == [at(1, 6)] and decided.next_run_at is None


def test_no_fire_time_after_the_end() -> None:
    state = ScheduleState(HOURLY, next_run_at=at(1, 6), end_at=at(1, 7, 30), catch_up=True)
    decided = plan(state, now=at(1, 9, 1), unfinished=0)
    assert decided.fire == [at(1, 6), at(1, 7)] and decided.next_run_at is None


def test_a_cron_naming_no_real_day_is_refused() -> None:
    with pytest.raises(InvalidInput, match="names no time that exists"):
        check_cron("0 0 31 2 *")
