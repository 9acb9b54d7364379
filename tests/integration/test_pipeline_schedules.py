"""Pipeline schedules against a real store: created only for a registered pipeline with valid
parameters, and a scheduler tick queues exactly one registered run per fire time, recorded as
made by the schedule, even when two ticks overlap."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from cloche.errors import InvalidInput, PipelineNotFound
from cloche.pipelines import component, pipeline, records, registered, schedules
from cloche.store.store import Store


@component
def shout(word: str) -> str:
    return word.upper()


@pipeline(name="nightly")
def nightly(word: str = "hi", times: int = 1) -> None:
    shout(word=word)


NOW = datetime(2030, 3, 4, 5, 30, tzinfo=UTC)


@pytest.fixture
def registered_store(any_store: Store) -> Store:
    registered.register(any_store, nightly, source="# nightly", file_name="n.py", actor="test")
    return any_store


def test_a_schedule_checks_its_pipeline_params_and_dates(registered_store: Store) -> None:
    store = registered_store
    with pytest.raises(PipelineNotFound):
        schedules.create_schedule(store, "nope", cron="0 6 * * *", now=NOW)
    with pytest.raises(InvalidInput, match="has no parameter 'colour'"):
        schedules.create_schedule(store, "nightly", cron="0 6 * * *", params={"colour": 1}, now=NOW)
    with pytest.raises(InvalidInput, match="takes a int"):
        schedules.create_schedule(
            store, "nightly", cron="0 6 * * *", params={"times": "x"}, now=NOW
        )
    with pytest.raises(InvalidInput, match="--start must be before --end"):
        schedules.create_schedule(
            store, "nightly", cron="0 6 * * *", start=NOW + timedelta(days=2),
            end=NOW + timedelta(days=1), now=NOW,
        )  # fmt: skip
    made = schedules.create_schedule(
        store, "nightly", cron="0 6 * * *", params={"word": "yo"}, now=NOW
    )
    assert made.next_run_at == NOW.replace(hour=6, minute=0)
    assert schedules.get_schedule(store, made.id[:6]).params == {"word": "yo"}


def test_a_tick_queues_one_registered_run_per_fire_time_with_its_trigger(
    registered_store: Store,
) -> None:
    store = registered_store
    made = schedules.create_schedule(
        store, "nightly", cron="0 6 * * *", params={"word": "yo"}, now=NOW
    )
    assert schedules.queue_due(store, now=NOW + timedelta(minutes=10)) == []
    queued = schedules.queue_due(store, now=NOW + timedelta(hours=1))
    assert len(queued) == 1
    run = records.get_run(store, queued[0].id)
    assert run.trigger == f"schedule:{made.id}" and run.state == "queued"
    assert run.params == {"word": "yo", "times": 1}
    assert schedules.queue_due(store, now=NOW + timedelta(hours=2)) == []
    after = schedules.get_schedule(store, made.id)
    assert after.runs_made == 1 and after.next_run_at == NOW.replace(hour=6, minute=0) + timedelta(
        days=1
    )


def test_two_ticks_at_once_still_queue_one_run(registered_store: Store) -> None:
    store = registered_store
    made = schedules.create_schedule(store, "nightly", cron="0 6 * * *", now=NOW)
    later = NOW + timedelta(hours=1)
    start = threading.Barrier(2)
    results: list[int] = []

    def tick() -> None:
        start.wait()
        results.append(len(schedules.queue_due(store, now=later)))

    threads = [threading.Thread(target=tick) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [0, 1]
    runs = [r for r in records.list_runs(store, limit=50) if r.trigger == f"schedule:{made.id}"]
    assert len(runs) == 1


def test_max_concurrent_skips_a_fire_time_and_says_so(registered_store: Store) -> None:
    store = registered_store
    made = schedules.create_schedule(store, "nightly", cron="0 * * * *", max_concurrent=1, now=NOW)
    assert len(schedules.queue_due(store, now=NOW + timedelta(minutes=31))) == 1
    assert schedules.queue_due(store, now=NOW + timedelta(minutes=91)) == []
    note = schedules.get_schedule(store, made.id).note
    assert "unfinished (--max-concurrent 1)" in note


def test_a_paused_schedule_queues_nothing_and_delete_removes_it(registered_store: Store) -> None:
    store = registered_store
    made = schedules.create_schedule(store, "nightly", cron="0 6 * * *", now=NOW)
    assert schedules.set_enabled(store, made.id, False).state == "paused"
    assert schedules.queue_due(store, now=NOW + timedelta(days=3)) == []
    schedules.delete_schedule(store, made.id)
    assert schedules.list_schedules(store) == []


def test_a_run_that_cannot_be_queued_is_said_on_the_schedule(registered_store: Store) -> None:
    from sqlalchemy import delete

    from cloche.store.tables import PipelineRow

    store = registered_store
    made = schedules.create_schedule(store, "nightly", cron="0 6 * * *", now=NOW)
    with store.transaction() as session:
        session.execute(delete(PipelineRow).where(PipelineRow.name == "nightly"))
    assert schedules.queue_due(store, now=NOW + timedelta(hours=1)) == []
    after = schedules.get_schedule(store, made.id)
    assert "could not queue a run: no registered pipeline 'nightly'" in after.note
    assert after.runs_made == 0 and after.next_run_at == NOW.replace(hour=6, minute=0) + timedelta(
        days=1
    )
