"""The store, deployment and payload-log rows the feedback tests share: churn:1 deployed, and
one-row predictions logged as the server logs them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from cloche.auth.roles import LOCAL_USER
from cloche.config import Settings
from cloche.endpoints import service as endpoints
from cloche.logs.service import log_root
from cloche.registry.inspection import inspect_here
from cloche.registry.upload import upload_model
from cloche.serving.payload_log import PayloadLog, encode_row
from cloche.store.store import Store
from cloche.store.tables import FeedbackRow

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def deploy_churn(store: Store, model_file: Path) -> None:
    upload_model(
        store,
        principal=LOCAL_USER,
        inspector=inspect_here,
        source=model_file,
        name="churn",
        metrics={"accuracy": 0.95},
    )
    endpoints.create_endpoint(store, name="churn")
    endpoints.deploy(store, endpoint="churn", ref="churn:1")


@pytest.fixture
def churn(any_store: Store, sklearn_model_file: Path) -> Store:
    deploy_churn(any_store, sklearn_model_file)
    return any_store


@pytest.fixture
def served(settings: Settings, sklearn_model_file: Path) -> Iterator[Store]:
    """churn:1 deployed on the test's CLOCHE_HOME, for the server, SDK and CLI."""
    store = Store.open(settings)
    deploy_churn(store, sklearn_model_file)
    yield store
    store.close()


def log_predictions(
    store: Store,
    start: datetime,
    rows: int,
    *,
    predict: Any = 1,
    probabilities: list[float] | None = None,
    prefix: str = "r",
) -> list[str]:
    """``rows`` one-row live predictions spread over the hour from ``start``; their ids."""
    rng = np.random.default_rng(int(start.timestamp()))
    X = rng.normal(size=(rows, 4))
    step_ms = 3_600_000 // rows
    first_ms = int(start.timestamp() * 1000)
    ids = [f"{prefix}-{i}" for i in range(rows)]
    outputs: dict[str, Any] = {"predict": [predict]}
    if probabilities is not None:
        outputs["probabilities"] = [probabilities]
    lines = [
        encode_row(
            (
                first_ms + i * step_ms,
                ids[i],
                "churn",
                "churn",
                1,
                1,
                False,
                200,
                2.5,
                [X[i].tolist()],
                outputs,
                None,
                "predict",
            )
        )
        for i in range(rows)
    ]
    log = PayloadLog(log_root(store.home))
    log.write(lines)
    log.close()
    return ids


def stored(store: Store) -> dict[str, Any]:
    with store.transaction() as session:
        return {r.request_id: r.label for r in session.scalars(select(FeedbackRow))}


def cloche_version(store: Store) -> Any:
    from cloche.registry import service as registry

    return registry.get_version(store, "churn:1")
