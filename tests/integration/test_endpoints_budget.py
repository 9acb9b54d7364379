"""The start-up check of a model memory budget against the deployed models, on SQLite and
PostgreSQL: one query, each model too large named with its size, and the budget that holds
them."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloche.auth.roles import LOCAL_USER
from cloche.endpoints import service as endpoints
from cloche.endpoints.budget import check_deployed_fit
from cloche.errors import InvalidInput
from cloche.registry.inspection import inspect_here
from cloche.registry.refs import parse_ref
from cloche.registry.service import resolve_version_row
from cloche.registry.upload import upload_model
from cloche.store.store import Store


@pytest.fixture
def deployed(any_store: Store, sklearn_model_file: Path) -> int:
    """churn:1 deployed to two endpoints (named once), churn:2 registered only; its file size."""
    for _ in range(2):
        upload_model(
            any_store,
            principal=LOCAL_USER,
            inspector=inspect_here,
            source=sklearn_model_file,
            name="churn",
        )
    for name in ("a", "b"):
        endpoints.create_endpoint(any_store, name=name)
        endpoints.deploy(any_store, endpoint=name, ref="churn:1")
    return sklearn_model_file.stat().st_size


def test_a_share_that_holds_every_deployed_model_passes(any_store: Store, deployed: int) -> None:
    check_deployed_fit(any_store, budget_bytes=2 * deployed, workers=2)


def test_a_share_smaller_than_a_deployed_model_names_it_once_with_a_budget_that_fits(
    any_store: Store, deployed: int
) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_deployed_fit(any_store, budget_bytes=2 * deployed - 2, workers=2)
    message = refused.value.message
    assert "leaves" in message and "to each of 2 worker(s)" in message
    assert message.count("churn:1 (") == 1 and "churn:2" not in message  # deployed ones only
    assert "start with --model-memory 1MiB or more" in (refused.value.hint or "")
    assert refused.value.details == {"worker_budget_bytes": deployed - 1}


def test_a_recorded_resident_size_counts_rather_than_the_file(
    any_store: Store, deployed: int
) -> None:
    with any_store.transaction() as session:
        resolve_version_row(session, parse_ref("churn:1")).resident_bytes = 5 * 2**20
    with pytest.raises(InvalidInput, match=r"churn:1 \(5 MiB\)") as refused:
        check_deployed_fit(any_store, budget_bytes=4 * 2**20, workers=1)
    assert "start with --model-memory 5MiB or more" in (refused.value.hint or "")
