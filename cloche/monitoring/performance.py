"""Model performance in a monitor window: the window's logged live predictions joined, by
request id, with the ground-truth labels sent as feedback, compared with the metrics recorded
on the model version and with the monitor's thresholds.

Only one-row requests answered by the primary version (status 200, not shadow, not explain)
count: a label names one request, so it can only grade a request with one prediction.

A metric that cannot be computed is named in ``skipped`` with the reason, never left out
silently; a threshold on it is "not evaluated" (neither breached nor ok). ROC AUC and log loss
are computed only when every labelled row has probabilities: the rows a client logged with
probabilities are not a random sample of the labelled ones (often one client, one route), so a
figure from them would grade another population than accuracy does, under the same name.
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
CLASSIFICATION = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION = ("mae", "rmse", "r2")
NEEDS_PROBABILITIES = ("roc_auc", "log_loss")
HOW_TO_LOG_PROBABILITIES = (
    'log predictions with probabilities: V1 "parameters": {"probabilities": true}, '
    "or V2 infer with the probabilities output (its default)"
)
NOT_EVALUATED = "not evaluated"
# Labels received this long before a window began still count (servers' clocks may differ).
LABEL_CLOCK_SLACK = timedelta(days=1)
# Names under which a version may have recorded a metric.
ALIASES = {"auc": "roc_auc", "f1_score": "f1", "r2_score": "r2", "logloss": "log_loss"}


@dataclass(frozen=True)
class Joined:
    predictions: list[Any]
    probabilities: list[list[float] | None]  # per prediction: None where none were logged
    labels: list[Any]
    logged: int | None  # one-row live predictions of the version in the window (None: unread)
    multi_row: int  # requests left out: more than one prediction

    @property
    def with_probabilities(self) -> int:
        return sum(p is not None for p in self.probabilities)


def evaluate(
    store: Store,
    endpoint: str,
    version: ModelVersion,
    thresholds: PerformanceThresholds,
    start: datetime,
    end: datetime,
) -> dict[str, Any]:
    """``{"labelled_rows", "logged_rows", "task", <metric>: {value, recorded, threshold,
    breached, verdict, definition[, reason]}, "skipped": {<metric>: reason}, ...}`` for the
    window, plus a ``note`` on what else was left out. ``verdict`` is breached, ok, no threshold
    or not evaluated (a skipped metric with a threshold, or too few labelled rows)."""
    joined = _join(store, endpoint, version, start, end)
    sig = version.parsed_signature()
    classifier = sig.task == "classification" or joined.with_probabilities > 0
    if sig.task == "regression":
        classifier = False
    result: dict[str, Any] = {
        "labelled_rows": len(joined.labels),
        "logged_rows": joined.logged,
        "task": "classification" if classifier else "regression",
    }
    if classifier:
        result["labelled_rows_with_probabilities"] = joined.with_probabilities
    notes = []
    if joined.logged is None:
        notes.append("no labels arrived since the window began: the log was not read")
    if joined.multi_row:
        notes.append(f"{joined.multi_row} requests with several rows were left out")
    own, other = (CLASSIFICATION, REGRESSION) if classifier else (REGRESSION, CLASSIFICATION)
    values: dict[str, float | None] = {}
    skipped: dict[str, str] = {}
    if not joined.labels:
        skipped = dict.fromkeys(own, "no labelled rows in the window")
    else:
        try:
            import sklearn.metrics  # noqa: F401
        except ImportError:
            skipped = dict.fromkeys(own, "scikit-learn is not installed")
        else:
            if classifier:
                classes = list(sig.classes) if sig.classes else None
                values, skipped = _classification(joined, classes, notes)
            else:
                values, skipped = _regression(joined)
    defined: dict[str, float] = {}
    for metric, value in values.items():
        if value is None or not math.isfinite(value):
            skipped.setdefault(metric, "undefined on these labels (not a finite number)")
        else:
            defined[metric] = value
    enough = len(joined.labels) >= thresholds.min_labelled_rows
    too_few = ""
    if joined.labels and not enough:
        too_few = (
            f"{len(joined.labels)} labelled rows, fewer than min_labelled_rows "
            f"{thresholds.min_labelled_rows}"
        )
        notes.append(f"{too_few}: no verdict")
    recorded = _recorded(version.metrics)
    for metric in METRICS:
        direction, field, definition = METRICS[metric]
        threshold = _threshold(
            direction, getattr(thresholds, field), recorded.get(metric), thresholds
        )
        if metric in other and threshold is not None:
            # Without labels the task may be a guess: the missing labels are the reason then.
            kind = "classification" if classifier else "regression"
            skipped[metric] = (
                f"does not apply: the model's task is {kind}"
                if joined.labels
                else "no labelled rows in the window"
            )
        entry: dict[str, Any] = {
            "value": defined.get(metric),
            "recorded": recorded.get(metric),
            "threshold": threshold,
            "breached": False,
            "definition": definition,
        }
        if metric in defined:
            value = defined[metric]
            if threshold is None:
                entry["verdict"] = "no threshold"
            elif not enough:
                entry["verdict"], entry["reason"] = NOT_EVALUATED, too_few
            else:
                entry["breached"] = value < threshold if direction == "min" else value > threshold
                entry["verdict"] = "breached" if entry["breached"] else "ok"
        elif metric in skipped and threshold is not None:
            # A threshold must not pass silently on a metric that was never computed.
            entry["verdict"], entry["reason"] = NOT_EVALUATED, skipped[metric]
        else:
            continue
        result[metric] = entry
    if skipped:
        result["skipped"] = {m: skipped[m] for m in METRICS if m in skipped}
    if notes:
        result["note"] = "; ".join(notes)
    return result


def breaches(performance: dict[str, Any]) -> list[str]:
    """The breach keys of an evaluation: ``performance:<metric>``."""
    return [f"performance:{m}" for m in METRICS if performance.get(m, {}).get("breached")]


def not_evaluated(performance: dict[str, Any]) -> list[str]:
    """``performance:<metric>`` for each threshold that could not be checked."""
    return [
        f"performance:{m}"
        for m in METRICS
        if performance.get(m, {}).get("verdict") == NOT_EVALUATED
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
        return Joined(predictions=[], probabilities=[], labels=[], logged=None, multi_row=0)
    table = read_log(
        log_root(store.home), endpoint, since=start, until=end, shared=store.shared_log
    )
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
    return Joined(
        predictions=[answers[rid][0] for rid in ids],
        probabilities=[answers[rid][1] for rid in ids],
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
) -> tuple[dict[str, float | None], dict[str, str]]:
    """The classification metrics, and the reason for each one that was skipped."""
    from sklearn import metrics

    y = [_key(v) for v in joined.labels]
    p = [_key(v) for v in joined.predictions]
    proba, unused = _probabilities(joined)
    order = [_key(c) for c in classes] if classes else None
    if order is None:
        order = sorted(set(y) | set(p), key=_sortable)
        if proba is not None and proba.shape[1] != len(order):
            unused = "needs the model's classes to read the probabilities: they are unknown"
            proba = None
    elif proba is not None and proba.shape[1] != len(order):
        unused = (
            f"needs probabilities with one column per class: {proba.shape[1]} columns for "
            f"{len(order)} classes"
        )
        proba = None
    strangers = sorted(set(y) - set(order))
    if strangers:
        notes.append(f"labels not among the model's classes: {', '.join(strangers[:10])}")
        order = order + strangers
        if proba is not None:
            unused = "labels not among the model's classes have no probability column"
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
        return values, dict.fromkeys(NEEDS_PROBABILITIES, unused)
    skipped: dict[str, str] = {}
    absent = [c for c in order if c not in set(y)]
    if absent:
        skipped["roc_auc"] = (
            f"needs labels of every class: no label of class {', '.join(absent[:10])} among "
            f"the {len(y)} labelled rows"
        )
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
            skipped["roc_auc"] = f"scikit-learn refused it: {exc}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. rows not summing to 1: still a fair loss
            values["log_loss"] = float(metrics.log_loss(y, proba, labels=order))
    except ValueError as exc:
        skipped["log_loss"] = f"scikit-learn refused it: {exc}"
    return values, skipped


def _probabilities(joined: Joined) -> tuple[np.ndarray | None, str]:
    """The labelled rows' probabilities as one array, only if every row has them; else why not."""
    have, rows = joined.with_probabilities, len(joined.probabilities)
    if have < rows:
        return None, (
            f"needs probabilities: {have} of {rows} labelled rows had them "
            f"({HOW_TO_LOG_PROBABILITIES})"
        )
    try:
        proba = np.asarray(joined.probabilities, dtype=float)
    except ValueError:  # rows of different lengths
        return None, "needs probabilities of one length: the logged rows differ"
    if proba.ndim != 2:
        return None, "needs probabilities of one number per class: the logged rows are not"
    return proba, ""


def _sortable(value: str) -> tuple[int, float | str]:
    try:
        return (0, float(value))
    except ValueError:
        return (1, value)


def _regression(joined: Joined) -> tuple[dict[str, float | None], dict[str, str]]:
    """The regression metrics, and the reason for each one that was skipped."""
    from sklearn import metrics

    try:
        y = np.asarray([_number(v) for v in joined.labels], dtype=float)
        p = np.asarray([_number(v) for v in joined.predictions], dtype=float)
    except (TypeError, ValueError):
        return {}, dict.fromkeys(REGRESSION, "needs numbers: labels or predictions are not")
    values: dict[str, float | None] = {
        "mae": float(metrics.mean_absolute_error(y, p)),
        "rmse": float(np.sqrt(metrics.mean_squared_error(y, p))),
    }
    if len(y) < 2:
        return values, {"r2": "needs at least 2 labelled rows"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant labels: R² is undefined (nan, then skipped)
        values["r2"] = float(metrics.r2_score(y, p))
    return values, {}


def _number(value: Any) -> float:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(value)
    return float(value)


def dataset_metrics(
    task: str,
    labels: list[Any],
    predictions: list[Any],
    probabilities: list[list[float]] | None,
    classes: list[Any] | None,
) -> tuple[dict[str, float], dict[str, str], list[str]]:
    """Label-based metrics of predictions on a labelled dataset (an evaluation, not a window):
    the defined values, each skipped metric with its reason, and notes, as monitors compute
    them."""
    joined = Joined(
        predictions=list(predictions),
        probabilities=list(probabilities) if probabilities is not None else [None] * len(labels),
        labels=list(labels),
        logged=None,
        multi_row=0,
    )
    notes: list[str] = []
    if task == "classification":
        values, skipped = _classification(joined, classes, notes)
    else:
        values, skipped = _regression(joined)
    defined = {m: v for m, v in values.items() if v is not None and math.isfinite(v)}
    for metric in set(values) - set(defined):
        skipped.setdefault(metric, "undefined on these labels (not a finite number)")
    return defined, skipped, notes


def better_or_equal(metric: str, candidate: float, reference: float) -> bool:
    """Whether ``candidate`` is no worse than ``reference`` on ``metric`` (its direction)."""
    direction = METRICS[metric][0]
    return candidate >= reference if direction == "min" else candidate <= reference
