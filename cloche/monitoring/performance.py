"""Model performance in a monitor window: the window's logged live predictions joined, by
request id, with the ground-truth labels sent as feedback, compared with the metrics recorded
on the model version and with the monitor's thresholds.

Only one-row requests answered by the primary version (status 200, not shadow, not explain)
count: a label names one request, so it can only grade a request with one prediction.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pyarrow.compute as pc
from sqlalchemy import select

from cloche.logs.service import log_root, read_log
from cloche.monitoring.entities import PerformanceThresholds
from cloche.monitoring.feedback import labels_for
from cloche.registry.entities import ModelVersion
from cloche.store.store import Store
from cloche.store.tables import FeedbackRow

# metric -> (direction, threshold field, definition); "min": higher is better.
METRICS: dict[str, tuple[str, str, str]] = {
    "accuracy": ("min", "min_accuracy", "share of labelled predictions that were right"),
    "precision": ("min", "min_precision", "precision (binary: positive class; else macro)"),
    "recall": ("min", "min_recall", "recall (binary: positive class; else macro)"),
    "f1": ("min", "min_f1", "F1 score (binary: positive class; else macro)"),
    "roc_auc": ("min", "min_roc_auc", "ROC AUC (multiclass: one-vs-rest, macro)"),
    "log_loss": ("max", "max_log_loss", "log loss of the predicted probabilities"),
    "mae": ("max", "max_mae", "mean absolute error"),
    "rmse": ("max", "max_rmse", "root mean squared error"),
    "r2": ("min", "min_r2", "coefficient of determination R²"),
}
# Labels received this long before a window began still count (servers' clocks may differ).
LABEL_CLOCK_SLACK = timedelta(days=1)
# Names under which a version may have recorded a metric.
ALIASES = {"auc": "roc_auc", "f1_score": "f1", "r2_score": "r2", "logloss": "log_loss"}


@dataclass(frozen=True)
class Joined:
    predictions: list[Any]
    probabilities: list[list[float]] | None  # one row per prediction, or None if any lacks one
    labels: list[Any]
    logged: int | None  # one-row live predictions of the version in the window (None: unread)
    multi_row: int  # requests left out: more than one prediction


def evaluate(
    store: Store,
    endpoint: str,
    version: ModelVersion,
    thresholds: PerformanceThresholds,
    start: datetime,
    end: datetime,
) -> dict[str, Any]:
    """``{"labelled_rows", "logged_rows", "task", <metric>: {value, recorded, threshold,
    breached, definition}, ...}`` for the window, plus a ``note`` when something was skipped."""
    joined = _join(store, endpoint, version, start, end)
    sig = version.parsed_signature()
    classifier = sig.task == "classification" or joined.probabilities is not None
    if sig.task == "regression":
        classifier = False
    result: dict[str, Any] = {
        "labelled_rows": len(joined.labels),
        "logged_rows": joined.logged,
        "task": "classification" if classifier else "regression",
    }
    notes = []
    if joined.logged is None:
        notes.append("no labels arrived since the window began: the log was not read")
    if joined.multi_row:
        notes.append(f"{joined.multi_row} requests with several rows were left out")
    values: dict[str, float | None] = {}
    if joined.labels:
        try:
            import sklearn.metrics  # noqa: F401
        except ImportError:
            notes.append("scikit-learn is not installed: performance was not computed")
        else:
            if classifier:
                classes = list(sig.classes) if sig.classes else None
                values = _classification(joined, classes, notes)
            else:
                values = _regression(joined, notes)
    enough = len(joined.labels) >= thresholds.min_labelled_rows
    if joined.labels and not enough:
        notes.append(
            f"{len(joined.labels)} labelled rows, fewer than min_labelled_rows "
            f"{thresholds.min_labelled_rows}: no verdict"
        )
    recorded = _recorded(version.metrics)
    for metric, value in values.items():
        value = value if value is None or math.isfinite(value) else None
        direction, field, definition = METRICS[metric]
        limit = getattr(thresholds, field)
        threshold = _threshold(direction, limit, recorded.get(metric), thresholds)
        breached = bool(
            enough
            and value is not None
            and threshold is not None
            and (value < threshold if direction == "min" else value > threshold)
        )
        result[metric] = {
            "value": value,
            "recorded": recorded.get(metric),
            "threshold": threshold,
            "breached": breached,
            "definition": definition,
        }
    if notes:
        result["note"] = "; ".join(notes)
    return result


def breaches(performance: dict[str, Any]) -> list[str]:
    """The breach keys of an evaluation: ``performance:<metric>``."""
    return [
        f"performance:{k}" for k, v in performance.items() if isinstance(v, dict) and v["breached"]
    ]


def _threshold(
    direction: str, absolute: float | None, recorded: float | None, limits: PerformanceThresholds
) -> float | None:
    """The strictest of the absolute threshold and the recorded value less ``max_drop``."""
    candidates = [] if absolute is None else [absolute]
    if recorded is not None and limits.max_drop is not None:
        drop = limits.max_drop
        candidates.append(recorded - drop if direction == "min" else recorded + drop)
    if not candidates:
        return None
    return max(candidates) if direction == "min" else min(candidates)


def _recorded(metrics: dict[str, Any]) -> dict[str, float]:
    found = {}
    for name, value in (metrics or {}).items():
        key = ALIASES.get(name.lower(), name.lower())
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if key in METRICS and number and math.isfinite(value):
            found[key] = float(value)
    return found


def _join(
    store: Store, endpoint: str, version: ModelVersion, start: datetime, end: datetime
) -> Joined:
    if not _labels_since(store, endpoint, start - LABEL_CLOCK_SLACK):
        # No label can grade this window: spare the read of its whole log (traffic-sized).
        return Joined(predictions=[], probabilities=None, labels=[], logged=None, multi_row=0)
    table = read_log(log_root(store.home), endpoint, since=start, until=end)
    keep = pc.invert(pc.fill_null(table["shadow"], False))
    if "kind" in table.column_names:
        keep = pc.and_(keep, pc.not_equal(pc.fill_null(table["kind"], "predict"), "explain"))
    keep = pc.and_(keep, pc.equal(table["status"], 200))
    keep = pc.and_(keep, pc.equal(table["model"], version.name))
    keep = pc.and_(keep, pc.equal(table["version"], version.version))
    table = table.filter(pc.fill_null(keep, False))
    answers: dict[str, tuple[Any, list[float] | None]] = {}
    multi = 0
    for rid, text in zip(
        table["request_id"].to_pylist(), table["outputs"].to_pylist(), strict=True
    ):
        if not rid or not text:
            continue
        outputs = orjson.loads(text)
        predicted = outputs.get("predict") if isinstance(outputs, dict) else None
        if not isinstance(predicted, list) or not predicted:
            continue
        if len(predicted) != 1:
            multi += 1
            continue
        probabilities = outputs.get("probabilities")
        row = probabilities[0] if isinstance(probabilities, list) and probabilities else None
        answers[rid] = (predicted[0], row if isinstance(row, list) else None)
    labels = labels_for(store, endpoint, list(answers))
    ids = [rid for rid in answers if rid in labels]
    probs = [p for p in (answers[rid][1] for rid in ids) if p is not None]
    return Joined(
        predictions=[answers[rid][0] for rid in ids],
        probabilities=probs if ids and len(probs) == len(ids) else None,
        labels=[labels[rid] for rid in ids],
        logged=len(answers),
        multi_row=multi,
    )


def _labels_since(store: Store, endpoint: str, since: datetime) -> bool:
    """Whether any label for the endpoint arrived since ``since``: a label for a request in
    the window cannot have arrived before the window began."""
    with store.transaction() as session:
        found = session.scalar(
            select(FeedbackRow.id)
            .where(FeedbackRow.endpoint == endpoint, FeedbackRow.received_at >= since)
            .limit(1)
        )
    return found is not None


def _key(value: Any) -> str:
    """One spelling per class: True, 1, 1.0 and "1" are the same class."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list) and len(value) == 1:  # e.g. a one-output model's [1]
        return _key(value[0])
    return str(value)


def _classification(
    joined: Joined, classes: list[Any] | None, notes: list[str]
) -> dict[str, float | None]:
    from sklearn import metrics

    y = [_key(v) for v in joined.labels]
    p = [_key(v) for v in joined.predictions]
    proba = np.asarray(joined.probabilities, dtype=float) if joined.probabilities else None
    order = [_key(c) for c in classes] if classes else None
    if order is None:
        order = sorted(set(y) | set(p), key=_sortable)
        if proba is not None and proba.shape[1] != len(order):
            notes.append("the model's classes are unknown: probabilities were not used")
            proba = None
    elif proba is not None and proba.shape[1] != len(order):
        notes.append("probabilities do not match the model's classes: not used")
        proba = None
    strangers = sorted(set(y) - set(order))
    if strangers:
        notes.append(f"labels not among the model's classes: {', '.join(strangers[:10])}")
        order = order + strangers
        proba = None
    values: dict[str, float | None] = {"accuracy": float(metrics.accuracy_score(y, p))}
    binary = len(order) == 2
    if binary:
        average: dict[str, Any] = {"average": "binary", "pos_label": order[1]}
    else:
        average = {"average": "macro", "labels": order}
    values["precision"] = float(metrics.precision_score(y, p, zero_division=0, **average))
    values["recall"] = float(metrics.recall_score(y, p, zero_division=0, **average))
    values["f1"] = float(metrics.f1_score(y, p, zero_division=0, **average))
    if proba is None:
        return values
    absent = [c for c in order if c not in set(y)]
    if absent:
        notes.append(f"ROC AUC not computed: no label of class {', '.join(absent[:10])}")
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if binary:
                    truth = [v == order[1] for v in y]
                    values["roc_auc"] = float(metrics.roc_auc_score(truth, proba[:, 1]))
                else:
                    values["roc_auc"] = float(
                        metrics.roc_auc_score(
                            y, proba, multi_class="ovr", average="macro", labels=order
                        )
                    )
        except ValueError as exc:
            notes.append(f"ROC AUC not computed: {exc}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. rows not summing to 1: still a fair loss
            values["log_loss"] = float(metrics.log_loss(y, proba, labels=order))
    except ValueError as exc:
        notes.append(f"log loss not computed: {exc}")
    return values


def _sortable(value: str) -> tuple[int, float | str]:
    try:
        return (0, float(value))
    except ValueError:
        return (1, value)


def _regression(joined: Joined, notes: list[str]) -> dict[str, float | None]:
    from sklearn import metrics

    try:
        y = np.asarray([_number(v) for v in joined.labels], dtype=float)
        p = np.asarray([_number(v) for v in joined.predictions], dtype=float)
    except (TypeError, ValueError):
        notes.append("labels or predictions are not numbers: regression metrics not computed")
        return {}
    values: dict[str, float | None] = {
        "mae": float(metrics.mean_absolute_error(y, p)),
        "rmse": float(np.sqrt(metrics.mean_squared_error(y, p))),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant labels: R² is undefined (None)
        values["r2"] = float(metrics.r2_score(y, p)) if len(y) >= 2 else None
    return values


def _number(value: Any) -> float:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(value)
    return float(value)
