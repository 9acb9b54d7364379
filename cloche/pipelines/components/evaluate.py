"""``evaluate_model``: a version's metrics on a labelled dataset, optionally beside another
version's on the same rows, with a pass or fail on given thresholds."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import cloche
from cloche.errors import InvalidDataset, InvalidInput
from cloche.monitoring.performance import METRICS, better_or_equal, dataset_metrics
from cloche.pipelines.artifacts import Metrics, Output
from cloche.pipelines.component import component
from cloche.registry.datasets import read_table
from cloche.runtimes.base import has_predict_proba


class Evaluation(NamedTuple):
    passed: bool
    values: dict  # type: ignore[type-arg]
    reasons: list  # type: ignore[type-arg]


@component
def evaluate_model(
    model: str,
    data: str,
    label_column: str,
    metrics: Output[Metrics],
    thresholds: dict | None = None,  # type: ignore[type-arg]
    against: str = "",
    compare_on: str = "accuracy",
) -> Evaluation:
    """Score the labelled dataset ``data`` with ``model``; pass when every threshold
    (``{"min_accuracy": 0.8, "max_log_loss": 0.5}``) holds and, with ``against`` (another
    version, e.g. ``churn@prod``), when ``model`` is no worse on ``compare_on``."""
    with cloche.Client() as client:
        values, skipped = _score(client, model, Path(data), label_column)
        reasons = _threshold_failures(values, skipped, thresholds or {})
        if against:
            theirs, _ = _score(client, against, Path(data), label_column)
            metrics.metadata["against"] = {"model": against, **theirs}
            if compare_on not in values or compare_on not in theirs:
                reasons.append(f"{compare_on} could not be computed for both versions")
            elif not better_or_equal(compare_on, values[compare_on], theirs[compare_on]):
                reasons.append(
                    f"{compare_on} {values[compare_on]:.4g} is worse than {against}'s "
                    f"{theirs[compare_on]:.4g}"
                )
    for name, value in values.items():
        metrics.log_metric(name, value)
    metrics.metadata["skipped"] = skipped
    Path(metrics.path).write_text(repr(values))
    print(f"{model}: {values}" + (f"; failed: {'; '.join(reasons)}" if reasons else "; passed"))
    return Evaluation(not reasons, values, reasons)


def _score(
    client: cloche.Client, ref: str, data: Path, label_column: str
) -> tuple[dict[str, float], dict[str, str]]:
    table = read_table(data).to_pandas()
    if label_column not in table.columns:
        raise InvalidDataset(
            f"{data.name} has no label column {label_column!r}",
            hint=f"its columns: {', '.join(map(str, table.columns))}",
        )
    labels = table.pop(label_column).tolist()
    version = client.models.show(ref)
    loaded = client.models.load(ref)
    signature = version.parsed_signature()
    predictions = loaded.predict(table)
    probabilities = None
    task = signature.task or "regression"
    if has_predict_proba(loaded):
        probabilities = loaded.predict_proba(table).tolist()  # type: ignore[attr-defined]
        task = "classification"
    classes = list(signature.classes) if signature.classes else None
    values, skipped, _ = dataset_metrics(task, labels, list(predictions), probabilities, classes)
    return values, skipped


def _threshold_failures(
    values: dict[str, float], skipped: dict[str, str], thresholds: dict[str, Any]
) -> list[str]:
    reasons = []
    by_field = {field: (metric, direction) for metric, (direction, field, _) in METRICS.items()}
    for field, limit in thresholds.items():
        if field not in by_field:
            raise InvalidInput(
                f"unknown threshold {field!r}", hint=f"one of: {', '.join(sorted(by_field))}"
            )
        metric, direction = by_field[field]
        if metric not in values:
            reasons.append(f"{metric} could not be computed: {skipped.get(metric, 'unknown')}")
        elif direction == "min" and values[metric] < float(limit):
            reasons.append(f"{metric} {values[metric]:.4g} < {field} {limit}")
        elif direction == "max" and values[metric] > float(limit):
            reasons.append(f"{metric} {values[metric]:.4g} > {field} {limit}")
    return reasons
