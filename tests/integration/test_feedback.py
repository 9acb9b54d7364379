"""Ground-truth labels ("feedback") on a real store and payload log: labels arrive days late by
request id, unknown ids are reported and not stored, a second label replaces the first, and a
monitor run grades the model with them against the metrics recorded on its version."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

import cloche
from cloche.auth.roles import LOCAL_USER
from cloche.config import Settings
from cloche.endpoints import service as endpoints
from cloche.errors import EndpointNotFound, InvalidInput
from cloche.logs.service import log_root
from cloche.monitoring import performance, runs, service
from cloche.monitoring.entities import MonitorConfig, PerformanceThresholds
from cloche.monitoring.feedback import record_feedback
from cloche.registry.inspection import inspect_here
from cloche.registry.upload import upload_model
from cloche.serving.payload_log import PayloadLog, encode_row
from cloche.store.store import Store
from cloche.store.tables import FeedbackRow, utcnow
from tests.integration.conftest import LiveServer

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


def test_monitor_run_breaches_performance_accuracy_against_the_recorded_metric(
    churn: Store,
) -> None:
    """Predictions logged as class 1, half of them labelled 0: accuracy 0.5 against 0.95."""
    ids = log_predictions(churn, NOW - timedelta(hours=1), 100, probabilities=[0.1, 0.8, 0.1])
    labels = [{"request_id": rid, "label": i % 2} for i, rid in enumerate(ids)]
    found = record_feedback(churn, "churn", labels, now=NOW + timedelta(days=2))
    assert found.accepted == 100
    service.create_monitor(churn, endpoint="churn", config=MonitorConfig())

    run = runs.run_monitor(churn, "churn", settings=Settings(home=churn.home), now=NOW)

    assert run.status == "breached", run.message
    assert "performance:accuracy" in run.breaches
    perf = run.results["performance"]
    assert perf["labelled_rows"] == 100
    assert perf["task"] == "classification"
    accuracy = perf["accuracy"]
    assert accuracy["value"] == pytest.approx(0.5)
    assert accuracy["recorded"] == 0.95
    assert accuracy["threshold"] == pytest.approx(0.90)
    assert accuracy["breached"] is True
    assert "log_loss" in perf and perf["log_loss"]["value"] > 0


def test_too_few_labels_report_performance_without_a_verdict(churn: Store) -> None:
    ids = log_predictions(churn, NOW - timedelta(hours=1), 60)
    labels = [{"request_id": rid, "label": 0} for rid in ids[:10]]
    record_feedback(churn, "churn", labels, now=NOW)
    service.create_monitor(churn, endpoint="churn", config=MonitorConfig())

    run = runs.run_monitor(churn, "churn", settings=Settings(home=churn.home), now=NOW)

    perf = run.results["performance"]
    assert perf["labelled_rows"] == 10
    assert perf["accuracy"]["value"] == 0.0
    assert perf["accuracy"]["breached"] is False
    assert "min_labelled_rows" in perf["note"]
    assert not [b for b in run.breaches if b.startswith("performance:")]


def test_absolute_thresholds_and_binary_metrics(churn: Store) -> None:
    """Binary labels with probabilities: ROC AUC and F1 of the second class, min_f1 breached."""
    version = cloche_version(churn)
    signature = {**version.signature, "task": "classification", "classes": [0, 1]}
    version = version.model_copy(update={"metrics": {}, "signature": signature})
    start = NOW - timedelta(hours=1)
    ids = log_predictions(churn, start, 40, predict=1, probabilities=[0.3, 0.7], prefix="b")
    labels = [{"request_id": rid, "label": int(i < 30)} for i, rid in enumerate(ids)]
    record_feedback(churn, "churn", labels, now=NOW)
    limits = PerformanceThresholds(min_f1=0.9, min_accuracy=0.5)

    perf = performance.evaluate(churn, "churn", version, limits, start, NOW)

    assert perf["accuracy"]["value"] == pytest.approx(0.75)
    assert perf["precision"]["value"] == pytest.approx(0.75)
    assert perf["recall"]["value"] == pytest.approx(1.0)
    assert perf["f1"]["value"] == pytest.approx(6 / 7)
    assert perf["roc_auc"]["value"] == pytest.approx(0.5)
    assert perf["log_loss"]["value"] > 0
    assert perf["labelled_rows_with_probabilities"] == 40
    assert "skipped" not in perf  # every labelled row had probabilities: nothing left out
    assert perf["accuracy"]["recorded"] is None
    assert perf["accuracy"]["breached"] is False
    assert perf["f1"]["breached"] is True
    assert performance.breaches(perf) == ["performance:f1"]


def test_roc_auc_and_log_loss_are_skipped_with_the_reason_when_some_labelled_rows_lack_them(
    churn: Store,
) -> None:
    """40 of 100 labelled predictions logged with probabilities: no ROC AUC or log loss from a
    subset, each named as skipped with the counts, and the min_roc_auc threshold not passed."""
    start = NOW - timedelta(hours=1)
    ids = log_predictions(churn, start, 40, probabilities=[0.1, 0.8, 0.1], prefix="with")
    ids += log_predictions(churn, start, 60, prefix="without")
    labels = [{"request_id": rid, "label": i % 3} for i, rid in enumerate(ids)]
    record_feedback(churn, "churn", labels, now=NOW)
    limits = PerformanceThresholds(min_roc_auc=0.7)
    service.create_monitor(churn, endpoint="churn", config=MonitorConfig(performance=limits))

    run = runs.run_monitor(churn, "churn", settings=Settings(home=churn.home), now=NOW)

    perf = run.results["performance"]
    assert perf["labelled_rows"] == 100 and perf["labelled_rows_with_probabilities"] == 40
    assert perf["accuracy"]["value"] == pytest.approx(33 / 100)  # label 1 on i % 3 == 1
    why = "needs probabilities: 40 of 100 labelled rows had them (log predictions with"
    assert set(perf["skipped"]) == {"roc_auc", "log_loss"}
    assert all(reason.startswith(why) for reason in perf["skipped"].values())
    assert '"probabilities": true' in perf["skipped"]["roc_auc"]
    assert perf["roc_auc"]["verdict"] == "not evaluated"
    assert perf["roc_auc"]["breached"] is False and perf["roc_auc"]["value"] is None
    assert perf["roc_auc"]["threshold"] == 0.7 and perf["roc_auc"]["reason"].startswith(why)
    assert "log_loss" not in perf  # skipped, with no threshold to report on
    assert "performance:roc_auc" not in run.breaches
    assert "not evaluated: performance:roc_auc" in run.message


def test_roc_auc_is_skipped_when_the_labels_hold_one_class(churn: Store) -> None:
    version = cloche_version(churn)
    signature = {**version.signature, "task": "classification", "classes": [0, 1]}
    version = version.model_copy(update={"metrics": {"auc": 0.9}, "signature": signature})
    start = NOW - timedelta(hours=1)
    ids = log_predictions(churn, start, 30, predict=1, probabilities=[0.3, 0.7], prefix="o")
    record_feedback(churn, "churn", [{"request_id": rid, "label": 1} for rid in ids], now=NOW)

    perf = performance.evaluate(churn, "churn", version, PerformanceThresholds(), start, NOW)

    assert perf["skipped"] == {
        "roc_auc": "needs labels of every class: no label of class 0 among the 30 labelled rows"
    }
    # The recorded AUC less max_drop is a threshold too: not evaluated, not passed.
    assert perf["roc_auc"]["verdict"] == "not evaluated"
    assert perf["roc_auc"]["threshold"] == pytest.approx(0.85)
    assert perf["log_loss"]["value"] == pytest.approx(-np.log(0.7))
    assert performance.not_evaluated(perf) == ["performance:roc_auc"]


def test_thresholds_of_the_other_task_and_an_empty_window_are_skipped_with_reasons(
    churn: Store,
) -> None:
    version = cloche_version(churn)
    signature = {**version.signature, "task": "classification", "classes": [0, 1]}
    version = version.model_copy(update={"metrics": {}, "signature": signature})
    start = NOW - timedelta(hours=1)
    ids = log_predictions(churn, start, 30, predict=1, probabilities=[0.3, 0.7], prefix="t")
    labels = [{"request_id": rid, "label": i % 2} for i, rid in enumerate(ids)]
    record_feedback(churn, "churn", labels, now=NOW)
    limits = PerformanceThresholds(max_mae=0.5)

    perf = performance.evaluate(churn, "churn", version, limits, start, NOW)
    empty = performance.evaluate(churn, "churn", version, limits, start - timedelta(days=9), start)

    assert perf["skipped"] == {"mae": "does not apply: the model's task is classification"}
    assert perf["mae"]["verdict"] == "not evaluated"
    assert perf["accuracy"]["verdict"] == "no threshold"
    assert empty["labelled_rows"] == 0
    assert set(empty["skipped"]) == {*performance.CLASSIFICATION, "mae"}
    assert set(empty["skipped"].values()) == {"no labelled rows in the window"}
    assert empty["mae"]["verdict"] == "not evaluated"


def test_too_few_labelled_rows_leave_a_threshold_not_evaluated(churn: Store) -> None:
    version = cloche_version(churn)
    start = NOW - timedelta(hours=1)
    ids = log_predictions(churn, start, 10, prefix="f")
    record_feedback(churn, "churn", [{"request_id": rid, "label": 1} for rid in ids], now=NOW)

    perf = performance.evaluate(
        churn, "churn", version, PerformanceThresholds(min_accuracy=0.9), start, NOW
    )

    assert perf["accuracy"]["value"] == 1.0
    assert perf["accuracy"]["verdict"] == "not evaluated"
    assert perf["accuracy"]["reason"] == "10 labelled rows, fewer than min_labelled_rows 30"


def test_the_sdk_returns_skipped_metrics_in_the_run_results(
    served: Store, client: cloche.Client
) -> None:
    # The run's window ends at the real now: the rows' first half lies in it.
    ids = log_predictions(served, utcnow() - timedelta(minutes=30), 60, prefix="s")
    client.monitors.feedback("churn", [{"request_id": rid, "label": 1} for rid in ids])
    client.monitors.create("churn", min_rows=1, performance={"min_roc_auc": 0.8})

    run = client.monitors.run("churn")

    perf = run.results["performance"]
    rows = perf["labelled_rows"]
    assert rows > 0 and perf["labelled_rows_with_probabilities"] == 0
    assert perf["skipped"]["roc_auc"].startswith(f"needs probabilities: 0 of {rows} labelled")
    assert perf["roc_auc"]["verdict"] == "not evaluated"
    assert "not evaluated: performance:roc_auc" in run.message


def cloche_version(store: Store) -> Any:
    from cloche.registry import service as registry

    return registry.get_version(store, "churn:1")


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


def test_regression_metrics_against_max_mae(churn: Store) -> None:
    version = cloche_version(churn)
    signature = {**version.signature, "task": "regression", "classes": None}
    version = version.model_copy(update={"metrics": {"rmse": 0.1}, "signature": signature})
    start = NOW - timedelta(hours=1)
    ids = log_predictions(churn, start, 30, predict=2.0, prefix="g")
    labels = [{"request_id": rid, "label": 2.0 + (1 if i % 2 else -1)} for i, rid in enumerate(ids)]
    record_feedback(churn, "churn", labels, now=NOW)

    perf = performance.evaluate(
        churn, "churn", version, PerformanceThresholds(max_mae=0.5), start, NOW
    )

    assert perf["task"] == "regression"
    assert perf["mae"] == {
        "value": 1.0,
        "recorded": None,
        "threshold": 0.5,
        "breached": True,
        "verdict": "breached",
        "definition": "mean absolute error",
    }
    assert perf["rmse"]["value"] == pytest.approx(1.0)
    assert perf["rmse"]["threshold"] == pytest.approx(0.15)
    assert perf["r2"]["value"] == pytest.approx(0.0)  # no better than the mean
    assert performance.breaches(perf) == ["performance:mae", "performance:rmse"]


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
