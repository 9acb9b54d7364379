"""One monitor run: profile the window, compare it with the baseline (skew) and with the
previous window (drift), check data quality and operational health, then open, re-notify or
resolve alerts and send one digest per run to the monitor's channels.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from cloche.config import Settings
from cloche.monitoring import performance, window
from cloche.monitoring.baselines import baseline_profile
from cloche.monitoring.entities import MonitorConfig, MonitorRun
from cloche.monitoring.feature_profiles import CategoricalProfile, NumericProfile
from cloche.monitoring.profiles import Profile
from cloche.monitoring.service import monitor_row, run_entity
from cloche.store.store import Store
from cloche.store.tables import MonitorRow, MonitorRunRow, utcnow

log = logging.getLogger(__name__)


def run_monitor(
    store: Store,
    name: str,
    *,
    settings: Settings | None = None,
    now: datetime | None = None,
    batch_job: str | None = None,
) -> MonitorRun:
    """Run a monitor once over the window ending ``now``, or with ``batch_job`` over that
    finished batch job's inputs and predictions (``batch_runs.py``); store and return the run."""
    if batch_job is not None:
        from cloche.monitoring.batch_runs import run_batch_job

        return run_batch_job(store, name, batch_job, settings=settings, now=now)
    now = now or utcnow()
    with store.transaction() as session:
        row = monitor_row(session, name)
        monitor_id, endpoint = row.id, row.endpoint
        config = MonitorConfig.model_validate(row.config)
    start = now - timedelta(seconds=config.window_s)
    try:
        status, rows, breaches, results, message = _evaluate(store, endpoint, config, start, now)
    except Exception as exc:  # a run that fails is recorded; the scheduler goes on
        log.exception("monitor %s failed", name)
        status, rows, breaches, results, message = "failed", 0, [], {}, f"{exc!r}"
    run = save_run(store, monitor_id, start, now, status, rows, breaches, results, message)
    if status in ("ok", "breached"):
        from cloche.monitoring import alerting

        run = alerting.apply(store, run, config, settings or Settings(), now=now)
    return run


def _evaluate(
    store: Store, endpoint: str, config: MonitorConfig, start: datetime, end: datetime
) -> tuple[str, int, list[str], dict[str, Any], str]:
    version = window.primary_version(store, endpoint)
    if version is None:
        return "no_data", 0, [], {}, f"endpoint {endpoint} has no live deployment"
    kinds = window.feature_kinds(version)
    current = window.read_traffic(store, endpoint, start, end, kinds)
    health = _health(current, config)
    if current.rows < config.min_rows:
        message = f"{current.rows} rows in the window, fewer than min_rows {config.min_rows}"
        return "no_data", current.rows, [], {"health": health, "model": version.ref}, message
    previous = window.read_traffic(store, endpoint, start - (end - start), start, kinds)
    baseline = baseline_profile(store, version)
    here = current.features
    before = previous.features if previous.rows >= config.min_rows else None
    features = compare_features(baseline, before, here, kinds, config)
    breaches = [key for f in features.values() for key in f["breaches"]]
    breaches += [f"health:{k}" for k, v in health.items() if v.get("breached")]
    results = {
        "model": version.ref,
        "features": features,
        "health": health,
        "sources": {"window": current.sources, "previous_window": previous.sources},
    }
    perf = performance.evaluate(store, endpoint, version, config.performance, start, end)
    results["performance"] = perf
    breaches += performance.breaches(perf)
    if baseline is None:
        results["note"] = f"{version.ref} has no baseline: skew and quality were not computed"
    status = "breached" if breaches else "ok"
    message = summary(breaches, current.rows)
    if unchecked := performance.not_evaluated(perf):
        # A threshold that could not be checked is no pass: the one-line message says so too.
        message += f"; not evaluated: {', '.join(unchecked)}"
    return status, current.rows, breaches, results, message


def _threshold(config: MonitorConfig, feature: str, default: float) -> float:
    return config.feature_thresholds.get(feature, default)


def compare_features(
    baseline: Profile | None,
    before: Profile | None,
    here: Profile,
    kinds: dict[str, str],
    config: MonitorConfig,
) -> dict[str, dict[str, Any]]:
    """Per feature: skew against ``baseline``, drift against ``before`` (each skipped when
    None), data quality, and the breached keys (``skew:f``, ``drift:f``, ``quality:rule:f``)."""
    from cloche.monitoring.histograms import feature_histogram
    from cloche.monitoring.quality import quality

    checks = quality(baseline, here) if baseline is not None else {}
    out = {}
    for name, kind in kinds.items():
        entry: dict[str, Any] = {"kind": kind, "breaches": []}
        for check, reference, default in (
            ("skew", baseline, config.skew_threshold),
            ("drift", before, config.drift_threshold),
        ):
            if reference is None or name not in reference.features:
                continue
            verdict = distance(reference, here, name, kind, config)
            verdict["threshold"] = _threshold(config, name, default)
            # No valid value on one side (all missing): no distance; quality reports it.
            value = verdict.get("value")
            verdict["breached"] = value is not None and value > verdict["threshold"]
            entry[check] = verdict
            if verdict["breached"]:
                entry["breaches"].append(f"{check}:{name}")
        if baseline is not None and name in baseline.features and name in here.features:
            entry["histogram"] = feature_histogram(baseline.features[name], here.features[name])
        if name in checks:
            entry["quality"] = _quality_verdicts(checks[name].to_dict(), config)
            entry["breaches"] += [
                f"quality:{rule}:{name}" for rule, v in entry["quality"].items() if v["breached"]
            ]
        out[name] = entry
    return out


def distance(
    reference: Profile, here: Profile, name: str, kind: str, config: MonitorConfig
) -> dict[str, Any]:
    from cloche.monitoring.distances import compare_categorical, compare_numeric

    if kind == "numeric":
        found = compare_numeric(reference.features[name], here.features[name], config.metric)
    else:
        found = compare_categorical(
            reference.features[name], here.features[name], config.categorical_metric
        )
    return found.to_dict()


def _quality_verdicts(values: dict[str, Any], config: MonitorConfig) -> dict[str, dict[str, Any]]:
    limits = config.quality.model_dump()
    verdicts = {}
    for rule, limit in limits.items():
        value = values.get(rule)
        if value is None:
            continue
        breached = limit is not None and value > limit
        verdicts[rule] = {"value": value, "threshold": limit, "breached": breached}
    return verdicts


def _health(traffic: window.Traffic, config: MonitorConfig) -> dict[str, dict[str, Any]]:
    """Latency percentiles, error rate and throughput, each against its threshold if set.

    Percentiles come from the window's latency sketch (KLL): the value at that rank, numpy's
    "inverted_cdf", to within the sketch's rank error (exact while it holds every value)."""
    limits = config.health
    values: dict[str, tuple[float | None, float | None, bool]] = {}
    latency = traffic.traffic.features["latency_ms"]
    if isinstance(latency, NumericProfile) and latency.valid:
        found = latency.quantiles([0.5, 0.95, 0.99])
        for q, limit, value in zip(
            (50, 95, 99), (limits.p50_ms, limits.p95_ms, limits.p99_ms), found, strict=True
        ):
            values[f"p{q}_ms"] = (float(value), limit, limit is not None and value > limit)
    if traffic.requests:
        counts = _status_counts(traffic.traffic)
        errors = sum(n for s, n in counts.items() if s >= 500) / traffic.requests
        values["error_rate"] = (errors, limits.error_rate, _over(errors, limits.error_rate))
        clients = sum(n for s, n in counts.items() if 400 <= s < 500) / traffic.requests
        values["client_error_rate"] = (clients, None, False)
    rate = traffic.requests / traffic.seconds if traffic.seconds else 0.0
    low = limits.min_rows_per_s is not None and rate < limits.min_rows_per_s
    values["requests_per_s"] = (rate, limits.min_rows_per_s, low)
    return {k: {"value": v, "threshold": t, "breached": b} for k, (v, t, b) in values.items()}


def _status_counts(traffic: Profile) -> dict[int, int]:
    status = traffic.features["status"]
    if not isinstance(status, CategoricalProfile):
        return {}
    return {int(code): n for code, n in status.counts().items() if code.lstrip("-").isdigit()}


def _over(value: float, limit: float | None) -> bool:
    return limit is not None and value > limit


def summary(breaches: list[str], rows: int) -> str:
    if not breaches:
        return f"{rows} rows; nothing breached"
    return f"{rows} rows; breached: {', '.join(breaches)}"


def save_run(
    store: Store,
    monitor_id: str,
    start: datetime,
    end: datetime,
    status: str,
    rows: int,
    breaches: list[str],
    results: dict[str, Any],
    message: str,
    *,
    started_at: datetime | None = None,
) -> MonitorRun:
    """Store a run over [start, end) (a batch job's run: its job's), begun at ``started_at``
    (default: ``end``, a window ends when its run begins)."""
    with store.transaction() as session:
        monitor = session.get(MonitorRow, monitor_id)
        assert monitor is not None
        row = MonitorRunRow(
            monitor_id=monitor_id,
            started_at=started_at or end,
            finished_at=utcnow(),
            window_start=start,
            window_end=end,
            status=status,
            rows=rows,
            breaches=breaches,
            results=results,
            message=message,
        )
        session.add(row)
        monitor.last_run_at = utcnow()
        session.flush()
        return run_entity(row, monitor.name)


def run_due(store: Store, settings: Settings) -> list[MonitorRun]:
    """Run every enabled monitor whose time has come, in this process."""
    now = utcnow()
    return [run_monitor(store, name, settings=settings, now=now) for name in take_due(store, now)]


def take_due(store: Store, now: datetime) -> list[str]:
    """The enabled monitors whose time has come, each moved on to its next run time first, so
    that a slow or failing run never runs twice at once."""
    with store.transaction() as session:
        due = session.scalars(
            select(MonitorRow).where(MonitorRow.enabled.is_(True), MonitorRow.next_run_at <= now)
        ).all()
        for row in due:
            row.next_run_at = now + timedelta(seconds=int(row.config["every_s"]))
        return [row.name for row in due]
