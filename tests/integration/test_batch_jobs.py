"""Batch job records, schedules and the scheduler lease, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloche.auth.roles import LOCAL_USER
from cloche.batch import schedules, service
from cloche.batch.places import Places
from cloche.batch.spec import JobSpec
from cloche.errors import (
    BatchJobNotFound,
    DestinationRefused,
    InvalidInput,
    JobStateConflict,
    ModelNotFound,
    ScheduleNotFound,
)
from cloche.registry.inspection import inspect_here
from cloche.registry.upload import upload_model
from cloche.scheduler import hold_lease, release_lease
from cloche.store.store import Store
from cloche.store.tables import BatchJobRow


@pytest.fixture
def churn(any_store: Store, sklearn_model_file: Path) -> Store:
    upload_model(
        any_store,
        principal=LOCAL_USER,
        inspector=inspect_here,
        source=sklearn_model_file,
        name="churn",
    )
    return any_store


def _places(tmp_path: Path) -> Places:
    return Places((tmp_path.resolve(),))


def _spec(tmp_path: Path, **changes: object) -> JobSpec:
    return JobSpec.from_dict(
        {"input": str(tmp_path / "in.parquet"), "output": str(tmp_path / "out"), **changes}
    )


def test_submit_resolves_the_reference_and_queues(churn: Store, tmp_path: Path) -> None:
    job = service.submit(churn, model_ref="churn", spec=_spec(tmp_path))
    assert job.state == "queued"
    assert job.model_version == "churn:1"
    assert job.id.startswith("bj_")
    assert service.get_job(churn, job.id[:7]).id == job.id  # a unique prefix finds it
    assert [j.id for j in service.list_jobs(churn, state="queued")] == [job.id]


def test_submit_refuses_a_model_that_does_not_exist(churn: Store, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound):
        service.submit(churn, model_ref="nope:1", spec=_spec(tmp_path))
    assert service.list_jobs(churn) == []


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"output_format": "xlsx"}, "output_format 'xlsx'"),
        ({"input_format": "avro"}, "input_format 'avro'"),
        ({"chunk_rows": 0}, "chunk_rows must be at least 1"),
        ({"workers": -1}, "workers must be 0"),
        ({"max_error_rate": 1.5}, "between 0 and 1"),
        ({"engine": "spark"}, "engine 'spark'"),
        ({"input": " "}, "input is empty"),
    ],
)
def test_submit_names_each_bad_option(
    churn: Store, tmp_path: Path, change: dict[str, object], words: str
) -> None:
    with pytest.raises(InvalidInput, match=words.replace("(", r"\(")):
        service.submit(churn, model_ref="churn", spec=_spec(tmp_path, **change))


def test_unknown_job_is_not_found_with_a_hint(churn: Store) -> None:
    with pytest.raises(BatchJobNotFound, match="bj_nothing") as info:
        service.get_job(churn, "bj_nothing")
    assert "cloche batch list" in (info.value.hint or "")


def test_cancel_a_queued_job_ends_it_and_a_second_cancel_conflicts(
    churn: Store, tmp_path: Path
) -> None:
    job = service.submit(churn, model_ref="churn", spec=_spec(tmp_path))
    assert service.cancel(churn, job.id).state == "cancelled"
    with pytest.raises(JobStateConflict, match="already ended"):
        service.cancel(churn, job.id)


def test_resume_refuses_a_finished_job_and_a_live_one(churn: Store, tmp_path: Path) -> None:
    job = service.submit(churn, model_ref="churn", spec=_spec(tmp_path))
    with churn.transaction() as session:
        row = session.get(BatchJobRow, job.id)
        assert row is not None
        row.state, row.runner = "running", service.runner_name()  # this very process
        row.heartbeat_at = datetime.now(UTC)
    with pytest.raises(JobStateConflict, match="still running"):
        service.request_resume(churn, job.id)
    with churn.transaction() as session:
        row = session.get(BatchJobRow, job.id)
        assert row is not None
        row.state = "succeeded"
    with pytest.raises(JobStateConflict, match="nothing to resume"):
        service.request_resume(churn, job.id)


def test_a_running_job_whose_process_died_can_be_resumed(churn: Store, tmp_path: Path) -> None:
    job = service.submit(churn, model_ref="churn", spec=_spec(tmp_path))
    with churn.transaction() as session:
        row = session.get(BatchJobRow, job.id)
        assert row is not None
        host = service.runner_name().rpartition(":")[0]
        row.state, row.runner, row.heartbeat_at = "running", f"{host}:999999", datetime.now(UTC)
    from cloche.batch.runner import fail_orphans

    assert fail_orphans(churn) == [job.id]
    failed = service.get_job(churn, job.id)
    assert failed.state == "failed" and f"cloche batch resume {job.id}" in failed.message
    assert service.request_resume(churn, job.id).state == "queued"


def test_schedule_queues_one_run_per_due_time_into_dated_folders(
    churn: Store, tmp_path: Path
) -> None:
    made = schedules.create_schedule(
        churn, places=_places(tmp_path), model_ref="churn", spec=_spec(tmp_path), cron="0 6 * * 1"
    )
    assert made.next_run_at.weekday() == 0 and made.next_run_at.hour == 6
    assert (
        schedules.queue_due(
            churn, places=_places(tmp_path), now=made.next_run_at - timedelta(seconds=1)
        )
        == []
    )
    # Three weeks late (the server was down): one run, not three.
    late = made.next_run_at + timedelta(weeks=3)
    queued = schedules.queue_due(churn, places=_places(tmp_path), now=late)
    assert len(queued) == 1
    assert queued[0].schedule_id == made.id
    assert queued[0].output.endswith(made.next_run_at.strftime("/%Y-%m-%dT%H%MZ"))
    shown = schedules.get_schedule(churn, made.id)
    assert [j.id for j in shown.history] == [queued[0].id]
    assert shown.next_run_at > late
    assert schedules.queue_due(churn, places=_places(tmp_path), now=late) == []


def test_paused_schedule_queues_nothing_and_resumes_from_now(churn: Store, tmp_path: Path) -> None:
    made = schedules.create_schedule(
        churn, places=_places(tmp_path), model_ref="churn", spec=_spec(tmp_path), cron="* * * * *"
    )
    schedules.set_enabled(churn, made.id, False)
    assert (
        schedules.queue_due(
            churn, places=_places(tmp_path), now=made.next_run_at + timedelta(hours=1)
        )
        == []
    )
    resumed = schedules.set_enabled(churn, made.id, True)
    assert resumed.enabled and resumed.next_run_at > datetime.now(UTC) - timedelta(seconds=1)


def test_bad_cron_and_unknown_schedule_are_clear_errors(churn: Store, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not a cron expression") as info:
        schedules.create_schedule(
            churn, places=_places(tmp_path), model_ref="churn", spec=_spec(tmp_path), cron="weekly"
        )
    assert "0 6 * * 1" in (info.value.hint or "")
    with pytest.raises(ScheduleNotFound):
        schedules.get_schedule(churn, "bs_missing")


def test_deleting_a_schedule_keeps_its_runs(churn: Store, tmp_path: Path) -> None:
    made = schedules.create_schedule(
        churn, places=_places(tmp_path), model_ref="churn", spec=_spec(tmp_path), cron="* * * * *"
    )
    run = schedules.queue_due(churn, places=_places(tmp_path), now=made.next_run_at)[0]
    schedules.delete_schedule(churn, made.id)
    assert service.get_job(churn, run.id).schedule_id is None
    assert schedules.list_schedules(churn) == []


def test_one_scheduler_holds_the_lease_until_it_expires_or_is_released(any_store: Store) -> None:
    assert hold_lease(any_store, "a:1")
    assert not hold_lease(any_store, "b:2")
    assert hold_lease(any_store, "a:1")  # renewal
    release_lease(any_store, "a:1")
    assert hold_lease(any_store, "b:2")
    assert not hold_lease(any_store, "a:1")
    assert hold_lease(any_store, "b:2", seconds=-1)  # an expired lease
    assert hold_lease(any_store, "a:1")


def test_a_schedule_is_checked_when_saved_and_again_when_its_run_is_queued(
    churn: Store, tmp_path: Path
) -> None:
    with pytest.raises(DestinationRefused, match="outside the folders"):
        schedules.create_schedule(
            churn, places=_places(tmp_path / "data"), model_ref="churn", spec=_spec(tmp_path),
            cron="* * * * *",
        )  # fmt: skip
    made = schedules.create_schedule(
        churn, places=_places(tmp_path), model_ref="churn", spec=_spec(tmp_path), cron="* * * * *"
    )
    # The operator narrowed the allowed folders since: the run is not queued.
    narrowed = _places(tmp_path / "data")
    assert schedules.queue_due(churn, places=narrowed, now=made.next_run_at) == []
    assert service.list_jobs(churn) == []
