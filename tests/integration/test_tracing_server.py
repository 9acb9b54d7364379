"""Tracing through a real server: a prediction's stages reach an OTLP receiver on loopback as
spans carrying the request id the client got back, beside the same stages in Server-Timing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import cloche
from cloche.config import Settings
from tests.integration._otlp_receiver import Receiver, otlp_receiver
from tests.integration.conftest import ServerFactory

FEATURES = ["tenure", "spend"]
LOOPBACK = {"allow": ["127.0.0.1"]}  # the receiver: the only destination allowed
STAGES = ["decode", "queue", "predict", "log", "encode"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with otlp_receiver() as r:
        yield r


@pytest.fixture
def deployed(settings: Settings, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(200, 2)), columns=FEATURES)
    path = tmp_path / "churn.joblib"
    joblib.dump(LogisticRegression().fit(X, (X["tenure"] > 0).astype(int)), path)
    client = cloche.Client(settings=settings)
    client.models.upload(path, name="churn")
    client.endpoints.create("churn")
    client.endpoints.deploy("churn", "churn:1")


def test_a_prediction_is_traced_with_its_stages_and_its_request_id(
    deployed: None,
    receiver: Receiver,
    start_server: ServerFactory,
) -> None:
    server = start_server(
        serving={"otlp_endpoint": receiver.url, "server_timing": True}, egress=LOOPBACK
    )
    body = {"instances": [{"tenure": 1.0, "spend": 2.0}]}

    answer = httpx.post(f"{server.url}/v1/models/churn:predict", json=body, timeout=30)

    assert answer.status_code == 200
    rid = answer.headers["x-request-id"]
    timing = answer.headers["server-timing"]
    assert all(f"{stage};dur=" in timing for stage in STAGES)
    spans = receiver.wait_for_spans(len(STAGES) + 1, timeout=30)
    request = next(s for s in spans if s.name == "predict churn")
    assert request.attributes["cloche.request_id"] == rid
    assert request.attributes["cloche.deployment"] == "churn:1"
    children = [s for s in spans if s.span.parent_span_id == request.span.span_id]
    assert [s.name for s in sorted(children, key=lambda s: s.span.start_time_unix_nano)] == STAGES


def test_health_and_metadata_calls_are_not_traced(
    deployed: None,
    receiver: Receiver,
    start_server: ServerFactory,
) -> None:
    server = start_server(serving={"otlp_endpoint": receiver.url}, egress=LOOPBACK)
    assert httpx.get(f"{server.url}/v2/health/ready", timeout=30).status_code == 200
    assert httpx.get(f"{server.url}/v2/models/churn", timeout=30).status_code == 200
    body = {"instances": [{"tenure": 1.0, "spend": 2.0}]}
    assert httpx.post(f"{server.url}/v1/models/churn:predict", json=body).status_code == 200

    spans = receiver.wait_for_spans(len(STAGES) + 1, timeout=30)

    assert {s.name for s in spans if s.span.parent_span_id == b""} == {"predict churn"}


def test_the_spans_request_id_joins_the_payload_log_row_and_its_ground_truth_label(
    deployed: None,
    receiver: Receiver,
    start_server: ServerFactory,
    settings: Settings,
) -> None:
    server = start_server(serving={"otlp_endpoint": receiver.url}, egress=LOOPBACK)
    body = {"instances": [{"tenure": 1.0, "spend": 2.0}]}

    # No X-Request-Id sent: the id the server makes is the one the span, the log and the
    # label share.
    answer = httpx.post(f"{server.url}/v1/models/churn:predict", json=body, timeout=30)

    assert answer.status_code == 200, answer.text
    spans = receiver.wait_for_spans(len(STAGES) + 1, timeout=30)
    (request,) = [s for s in spans if s.name == "predict churn"]
    traced = request.attributes["cloche.request_id"]
    with cloche.Client(settings=settings) as sdk:
        (row,) = sdk.logs.read("churn", since="10m").to_pylist()
        labelled = sdk.monitors.feedback("churn", [{"request_id": traced, "label": 1}])
    assert traced == row["request_id"] == answer.headers["x-request-id"]
    assert (labelled.accepted, labelled.unknown_request_ids) == (1, [])
