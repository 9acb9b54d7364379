"""A monitor run over a finished batch job: the job's inputs against its model version's
baseline, as a monitor compares an endpoint's window (skew per feature with the monitor's
metric, bins and thresholds; data quality), plus the distribution of its predictions.

The run is stored with the monitor's runs (``cloche monitors show`` lists it) and alerts
through the monitor's channels, in the monitor's stream of batch-job alerts (keys
``batch:skew:spend``; see ``alerting.py``). Drift, health and label-based performance are
about a window of live traffic and its predecessor, so they do not apply: the results say so.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from cloche.config import Settings
from cloche.errors import ClocheError, InvalidInput
from cloche.monitoring import alerting, batch_data, window
from cloche.monitoring.baselines import baseline_predictions, baseline_profile
from cloche.monitoring.batch_data import PREDICTION_COLUMN, FinishedJob
from cloche.monitoring.entities import MonitorConfig, MonitorRun
from cloche.monitoring.profiles import Profile
from cloche.monitoring.runs import compare_features, distance, save_run, summary
from cloche.monitoring.service import monitor_row
from cloche.registry import service as registry
from cloche.registry.entities import ModelVersion
from cloche.store.store import Store
from cloche.store.tables import utcnow

log = logging.getLogger(__name__)

PREDICTIONS_KEY = "predictions:skew"  # the breach of the prediction distribution
NOT_APPLICABLE = {
    "drift": "drift compares a window of traffic with the window before it, and a batch job "
    "has no previous window; skew compares the job with the baseline",
    "health": "latency, error rate and throughput come from an endpoint's payload log; "
    "see `cloche batch show` for the job's own rows, bad rows and speed",
    "performance": "performance is graded from labels sent by request id for live traffic",
}


def run_batch_job(
    store: Store,
    name: str,
    job_id: str,
    *,
    settings: Settings | None = None,
    now: datetime | None = None,
) -> MonitorRun:
    """Compare the finished batch job ``job_id`` with its model version's baseline using
    monitor ``name``'s configuration; store the run, apply its alerts and return it.

    Refused before anything is stored: an unknown monitor or job, a job that has not
    finished or wrote no predictions, and a version without a baseline."""
    now = now or utcnow()
    with store.transaction() as session:
        row = monitor_row(session, name)
        monitor_id = row.id
        config = MonitorConfig.model_validate(row.config)
    job = batch_data.finished_job(store, job_id)
    version = registry.get_version(store, job.model)
    baseline = baseline_profile(store, version)
    if baseline is None:
        raise InvalidInput(
            f"{version.ref}, the model of batch job {job.id}, has no baseline to compare with",
            hint=f"attach the data it was trained on: cloche baselines create {version.ref} DATA",
        )
    start = job.job.started_at or job.job.created_at
    end = job.job.finished_at or now
    try:
        status, rows, breaches, results, message = _evaluate(store, job, version, baseline, config)
    except Exception as exc:  # recorded like any failed run: the files may have gone since
        log.exception("monitor %s failed on batch job %s", name, job.id)
        text = f"{exc.message}; {exc.hint}" if isinstance(exc, ClocheError) else repr(exc)
        status, rows, breaches, message = "failed", 0, [], text
        results = {"batch_job": job.id, "model": version.ref, "source": job.describe()}
    run = save_run(
        store, monitor_id, start, end, status, rows, breaches, results, message, started_at=now
    )
    if status in ("ok", "breached"):
        run = alerting.apply(store, run, config, settings or Settings(), now=now)
    return run


def _evaluate(
    store: Store,
    job: FinishedJob,
    version: ModelVersion,
    baseline: Profile,
    config: MonitorConfig,
) -> tuple[str, int, list[str], dict[str, Any], str]:
    kinds = window.feature_kinds(version)
    inputs = batch_data.profile_inputs(job, kinds)
    results: dict[str, Any] = {
        "batch_job": job.id,  # also what marks the run as a batch job's (alerting.py)
        "model": version.ref,
        "source": job.describe(),
        "not_applicable": NOT_APPLICABLE,
    }
    notes = _notes(job)
    if notes:
        results["note"] = "; ".join(notes)
    if inputs.rows < config.min_rows:
        message = f"{inputs.rows} input rows, fewer than min_rows {config.min_rows}"
        return "no_data", inputs.rows, [], results, message
    features = compare_features(baseline, None, inputs, kinds, config)
    predictions = _predictions(store, job, version, config)
    breaches = [key for f in features.values() for key in f["breaches"]]
    breaches += [PREDICTIONS_KEY] if predictions.get("skew", {}).get("breached") else []
    results |= {"features": features, "predictions": predictions}
    keys = [alerting.BATCH_PREFIX + key for key in breaches]
    status = "breached" if keys else "ok"
    return status, inputs.rows, keys, results, summary(keys, inputs.rows)


def _notes(job: FinishedJob) -> list[str]:
    notes = []
    if job.job.state not in ("succeeded", "partially_succeeded"):
        scored = job.manifest.get("rows_scored")
        notes.append(
            f"the job ended {job.job.state}: every input row is profiled, but the predictions "
            f"cover only the {scored} rows it scored"
        )
    changed = batch_data.changed_inputs(job)
    if changed:
        notes.append("input changed since the job ran: " + ", ".join(changed))
    return notes


def _predictions(
    store: Store, job: FinishedJob, version: ModelVersion, config: MonitorConfig
) -> dict[str, Any]:
    """The prediction distribution, and its skew from the baseline's recorded predictions
    (a ``prediction`` column in the baseline dataset) when there are any."""
    kind = batch_data.prediction_kind(version, job)
    here = batch_data.profile_predictions(job, kind)
    entry: dict[str, Any] = {"column": PREDICTION_COLUMN, "kind": kind, **here.summary()}
    reference = baseline_predictions(store, version, PREDICTION_COLUMN, kind)
    if reference is None:
        entry["note"] = (
            f"the baseline of {version.ref} records no predictions (no {PREDICTION_COLUMN!r} "
            "column): the distribution is reported without a verdict"
        )
        return entry
    verdict = distance(
        Profile(reference.count, {PREDICTION_COLUMN: reference}),
        Profile(here.count, {PREDICTION_COLUMN: here}),
        PREDICTION_COLUMN,
        kind,
        config,
    )
    verdict["threshold"] = config.feature_thresholds.get(PREDICTION_COLUMN, config.skew_threshold)
    value = verdict.get("value")
    verdict["breached"] = value is not None and value > verdict["threshold"]
    entry["skew"] = verdict
    return entry
