"""Jobs and schedules are named by a unique prefix of their id; an ambiguous prefix names the
candidates, and one too short or matching nothing is not found."""

from __future__ import annotations

import pytest

from cloche.batch import schedules, service
from cloche.errors import BatchJobNotFound, InvalidInput, ScheduleNotFound
from cloche.store.store import Store
from cloche.store.tables import BatchJobRow, BatchScheduleRow, utcnow


@pytest.fixture
def two_schedules(store: Store) -> Store:
    with store.transaction() as session:
        for id_ in ("bs_abc111", "bs_abc222"):
            session.add(
                BatchScheduleRow(
                    id=id_,
                    model_ref="churn@prod",
                    cron="0 6 * * 1",
                    spec={"input": "/srv/in", "output": "/srv/out"},
                    enabled=True,
                    next_run_at=utcnow(),
                    created_by="test",
                )
            )
    return store


def test_a_unique_schedule_prefix_names_the_schedule(two_schedules: Store) -> None:
    assert schedules.get_schedule(two_schedules, "bs_abc1").id == "bs_abc111"
    assert schedules.set_enabled(two_schedules, "bs_abc2", False).id == "bs_abc222"
    schedules.delete_schedule(two_schedules, "bs_abc1")
    assert [s.id for s in schedules.list_schedules(two_schedules)] == ["bs_abc222"]


def test_an_ambiguous_schedule_prefix_names_the_matches(two_schedules: Store) -> None:
    with pytest.raises(InvalidInput, match="bs_abc111, bs_abc222") as caught:
        schedules.get_schedule(two_schedules, "bs_abc")
    assert caught.value.hint and "more of the id" in caught.value.hint


@pytest.mark.parametrize("given", ["bs_", "bs_zzz", "bs_abc1%", "bs_abc_"])
def test_a_short_unknown_or_wildcard_prefix_is_not_found(two_schedules: Store, given: str) -> None:
    with pytest.raises(ScheduleNotFound, match="does not exist") as caught:
        schedules.get_schedule(two_schedules, given)
    assert caught.value.hint and "schedules list" in caught.value.hint


def test_an_ambiguous_job_prefix_names_the_matches(store: Store) -> None:
    with store.transaction() as session:
        for id_ in ("bj_fff000", "bj_fff999"):
            session.add(
                BatchJobRow(
                    id=id_,
                    model_ref="churn:1",
                    model_version="churn:1",
                    model_sha256="0" * 64,
                    spec={"input": "/srv/in", "output": "/srv/out"},
                    state="queued",
                    progress={},
                    message="",
                    cancel_requested=False,
                    created_by="test",
                )
            )
    assert service.get_job(store, "bj_fff9").id == "bj_fff999"
    with pytest.raises(InvalidInput, match="bj_fff000, bj_fff999"):
        service.get_job(store, "bj_fff")
    with pytest.raises(BatchJobNotFound):
        service.get_job(store, "bj_f_f")
