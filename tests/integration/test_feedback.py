"""Ground-truth labels ("feedback") on a real store and payload log: labels arrive days late by
request id, unknown ids are reported and not stored, a second label replaces the first, and a
monitor run grades the model with them against the metrics recorded on its version."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

import cloche
from cloche.errors import EndpointNotFound, InvalidInput
from cloche.monitoring.feedback import record_feedback
from cloche.store.store import Store
from cloche.store.tables import utcnow
from tests.integration._feedback import (
    NOW,
    churn,
    log_predictions,
    served,
    stored,
)
from tests.integration.conftest import LiveServer

__all__ = ["churn", "served"]  # fixtures, imported for pytest


def test_labels_days_later_are_stored_and_unknown_ids_reported_not_stored(churn: Store) -> None:
    ids = log_predictions(churn, NOW - timedelta(days=3), 5)

    found = record_feedback(
        churn,
        "churn",
        [
            {"request_id": ids[0], "label": 1},
            {"request_id": ids[1], "label": "yes"},
            {"request_id": "nope", "label": 0},
            {"request_id": ids[2], "label": 2.5},
        ],
        actor="app",
        now=NOW,
    )

    assert (found.accepted, found.replaced, found.unknown_request_ids) == (3, 0, ["nope"])
    assert stored(churn) == {ids[0]: 1, ids[1]: "yes", ids[2]: 2.5}


def test_request_older_than_the_lookback_is_unknown(churn: Store) -> None:
    ids = log_predictions(churn, NOW - timedelta(days=40), 2)
    found = record_feedback(churn, "churn", [{"request_id": ids[0], "label": 1}], now=NOW)
    assert (found.accepted, found.unknown_request_ids) == (0, [ids[0]])
    assert stored(churn) == {}


def test_second_label_replaces_the_first(churn: Store) -> None:
    ids = log_predictions(churn, NOW - timedelta(hours=2), 3)
    record_feedback(churn, "churn", [{"request_id": ids[0], "label": 0}], now=NOW)

    found = record_feedback(
        churn,
        "churn",
        [
            {"request_id": ids[0], "label": 1},
            {"request_id": ids[1], "label": 0},
            {"request_id": ids[1], "label": 1},
        ],
        now=NOW,
    )

    assert (found.accepted, found.replaced) == (3, 2)
    assert stored(churn) == {ids[0]: 1, ids[1]: 1}


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([], "non-empty list"),
        ({"request_id": "a", "label": 1}, "non-empty list"),
        ([{"request_id": "a", "label": 1}, "x"], "labels[1] must be an object"),
        ([{"label": 1}], "labels[0].request_id"),
        ([{"request_id": "", "label": 1}], "labels[0].request_id"),
        ([{"request_id": "a" * 201, "label": 1}], "at most 200"),
        ([{"request_id": "a"}], "labels[0] has no label"),
        ([{"request_id": "a", "label": None}], "labels[0].label must be a number"),
        ([{"request_id": "a", "label": [1]}], "labels[0].label must be a number"),
        ([{"request_id": "a", "label": 1, "x": 2}], "unexpected fields: x"),
        ([{"request_id": "a", "label": 1}] * 10_001, "at most 10,000"),
    ],
)
def test_bad_labels_are_refused_naming_the_item(churn: Store, labels: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("[", r"\[").replace(".", r"\.")):
        record_feedback(churn, "churn", labels)


def test_unknown_endpoint(churn: Store) -> None:
    with pytest.raises(EndpointNotFound):
        record_feedback(churn, "nope", [{"request_id": "a", "label": 1}])


def test_feedback_over_rest_with_clear_422s(served: Store, live_server: LiveServer) -> None:
    ids = log_predictions(served, utcnow() - timedelta(days=2), 3)
    url = f"{live_server.url}/api/v1/endpoints/churn/feedback"
    with httpx.Client(timeout=30, headers=live_server.auth) as http:
        ok = http.post(
            url,
            json={"labels": [{"request_id": ids[0], "label": 1}, {"request_id": "x", "label": 0}]},
        )
        assert ok.status_code == 200, ok.text
        assert ok.json() == {"accepted": 1, "replaced": 0, "unknown_request_ids": ["x"]}

        for body, needle in [
            ({}, "labels"),
            ({"labels": []}, "non-empty"),
            ({"labels": [{"request_id": ids[0]}]}, "labels[0] has no label"),
            ({"labels": [{"request_id": ids[0], "label": {"a": 1}}]}, "labels[0].label"),
            ({"labels": [{"request_id": 5, "label": 1}]}, "labels[0].request_id"),
        ]:
            bad = http.post(url, json=body)
            assert bad.status_code == 422, (body, bad.text)
            assert needle in bad.text, (body, bad.text)

        missing = http.post(
            f"{live_server.url}/api/v1/endpoints/nope/feedback",
            json={"labels": [{"request_id": "a", "label": 1}]},
        )
        assert missing.status_code == 404


def test_feedback_through_the_sdk(served: Store, client: cloche.Client) -> None:
    ids = log_predictions(served, utcnow() - timedelta(hours=5), 3)
    first = client.monitors.feedback("churn", [{"request_id": ids[0], "label": 0}])
    again = client.monitors.feedback(
        "churn", [{"request_id": ids[0], "label": 1}, {"request_id": "gone", "label": 1}]
    )
    assert (first.accepted, first.replaced) == (1, 0)
    assert (again.accepted, again.replaced, again.unknown_request_ids) == (1, 1, ["gone"])
    with pytest.raises(InvalidInput, match="non-empty"):
        client.monitors.feedback("churn", [])


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_cli_sends_a_file_of_labels(served: Store, tmp_path: Path, fmt: str) -> None:
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from cloche.cli.app import app

    ids = log_predictions(served, utcnow() - timedelta(days=1), 4)
    table = pa.table({"request_id": [*ids[:3], "ghost"], "label": [1, 0, 1, 1]})
    path = tmp_path / f"labels.{fmt}"
    if fmt == "csv":
        pcsv.write_csv(table, path)
    elif fmt == "parquet":
        pq.write_table(table, path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in table.to_pylist()))

    result = CliRunner().invoke(app, ["feedback", "churn", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "accepted": 3,
        "replaced": 0,
        "unknown_request_ids": ["ghost"],
    }
    plain = CliRunner().invoke(app, ["feedback", "churn", str(path)])
    assert plain.exit_code == 0, plain.output
    assert "3 labels stored" in plain.output and "3 replaced" in plain.output
    assert "1 unknown request ids" in plain.output and "ghost" in plain.output


def test_data_plane_feedback_route_takes_labels_for_a_real_prediction(
    served: Store, live_server: LiveServer
) -> None:
    """POST /v1/models/{endpoint}:feedback, joined by the request id the server returned."""
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        for _ in range(100):  # the server loads the deployment in the background
            answer = http.post(
                "/v1/models/churn:predict", json={"instances": [[0.1, 0.2, 0.3, 0.4]]}
            )
            if answer.status_code == 200:
                break
        assert answer.status_code == 200, answer.text
        rid = answer.headers["x-request-id"]
        labels = {"labels": [{"request_id": rid, "label": 1}, {"request_id": "nope", "label": 0}]}
        reply = http.post("/v1/models/churn:feedback", json=labels)
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"accepted": 1, "replaced": 0, "unknown_request_ids": ["nope"]}
        bad = http.post("/v1/models/churn:feedback", content=b"{not json")
        assert bad.status_code == 422 and "labels" in bad.json()["error"]["hint"]
        missing = http.post("/v1/models/ghost:feedback", json=labels)
        assert missing.status_code == 404
