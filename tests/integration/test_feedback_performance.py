"""Ground-truth labels grading a model: a monitor run's performance metrics against the metrics
recorded on its version or absolute thresholds, and every metric it cannot compute skipped with
its reason."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

import cloche
from cloche.config import Settings
from cloche.monitoring import performance, runs, service
from cloche.monitoring.entities import MonitorConfig, PerformanceThresholds
from cloche.monitoring.feedback import record_feedback
from cloche.store.store import Store
from cloche.store.tables import utcnow
from tests.integration._feedback import (
    NOW,
    churn,
    cloche_version,
    log_predictions,
    served,
)

__all__ = ["churn", "served"]  # fixtures, imported for pytest


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
