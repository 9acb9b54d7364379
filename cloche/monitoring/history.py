"""A monitor's stored results over time, for charts: one feature's skew and drift per run
against their thresholds, and its baseline-against-window histogram of one run. Read from the
runs as they were stored (each with its own thresholds then); nothing is recomputed."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select

from cloche import audit
from cloche.errors import BadRequest, FeatureNotFound, MonitorRunNotFound
from cloche.monitoring.service import monitor_row
from cloche.store.store import Store
from cloche.store.tables import MonitorRunRow

MAX_RUNS = 5000


class Distance(BaseModel):
    value: float | None = Field(description="None when a side had no valid value")
    threshold: float
    breached: bool
    metric: str


class FeaturePoint(BaseModel):
    run: int
    window_start: datetime
    window_end: datetime
    status: str
    skew: Distance | None = Field(description="against the baseline; None if not computed")
    drift: Distance | None = Field(description="against the previous window; None if not")


class FeatureHistory(BaseModel):
    monitor: str
    feature: str
    points: list[FeaturePoint] = Field(description="oldest first")


class FeatureHistogram(BaseModel):
    monitor: str
    feature: str
    run: int
    window_start: datetime
    window_end: datetime
    kind: Literal["numeric", "categorical"]
    edges: list[float] | None = Field(default=None, description="numeric: interior bin edges")
    categories: list[str] | None = Field(default=None, description="categorical: the bins")
    baseline: list[float] = Field(description="share of the baseline's valid values per bin")
    window: list[float] = Field(description="share of the window's valid values per bin")
    baseline_rows: int
    window_rows: int
    note: str


def feature_history(
    store: Store, monitor: str, feature: str, *, limit: int = 200
) -> FeatureHistory:
    """``feature``'s skew and drift in the last ``limit`` runs that computed either."""
    if not 1 <= limit <= MAX_RUNS:
        raise BadRequest(f"limit {limit} is out of range", hint=f"use 1 to {MAX_RUNS}")
    with store.transaction() as session:
        row = monitor_row(session, monitor)
        runs = session.scalars(
            select(MonitorRunRow)
            .where(MonitorRunRow.monitor_id == row.id)
            .order_by(MonitorRunRow.window_end.desc(), MonitorRunRow.id.desc())
            .limit(limit)
        ).all()
        name = row.name
        points = [p for r in reversed(runs) if (p := _point(r, feature)) is not None]
        if not points and runs:
            raise _no_feature(name, feature, runs)
    return FeatureHistory(monitor=name, feature=feature, points=points)


def _point(run: MonitorRunRow, feature: str) -> FeaturePoint | None:
    entry = (run.results or {}).get("features", {}).get(feature)
    if not entry or ("skew" not in entry and "drift" not in entry):
        return None
    return FeaturePoint(
        run=run.id,
        window_start=audit.as_utc(run.window_start),
        window_end=audit.as_utc(run.window_end),
        status=run.status,
        skew=_distance(entry.get("skew")),
        drift=_distance(entry.get("drift")),
    )


def _distance(verdict: dict[str, Any] | None) -> Distance | None:
    if verdict is None:
        return None
    return Distance(
        value=verdict.get("value"),
        threshold=verdict["threshold"],
        breached=bool(verdict.get("breached")),
        metric=verdict.get("metric", ""),
    )


def feature_histogram(
    store: Store, monitor: str, feature: str, *, run: int | None = None
) -> FeatureHistogram:
    """``feature``'s baseline and window shares over the same bins, as run ``run`` (default:
    the latest run that stored them) saw them."""
    with store.transaction() as session:
        row = monitor_row(session, monitor)
        query = select(MonitorRunRow).where(MonitorRunRow.monitor_id == row.id)
        if run is not None:
            found = session.scalar(query.where(MonitorRunRow.id == run))
            if found is None:
                raise MonitorRunNotFound(
                    f"monitor {row.name!r} has no run {run}",
                    hint=f"`cloche monitors runs {row.name}` lists its runs",
                )
            candidates = [found]
        else:
            candidates = list(
                session.scalars(query.order_by(MonitorRunRow.id.desc()).limit(MAX_RUNS))
            )
        for candidate in candidates:
            entry = (candidate.results or {}).get("features", {}).get(feature) or {}
            if entry.get("histogram"):
                return FeatureHistogram(
                    monitor=row.name,
                    feature=feature,
                    run=candidate.id,
                    window_start=audit.as_utc(candidate.window_start),
                    window_end=audit.as_utc(candidate.window_end),
                    **entry["histogram"],
                )
        raise _no_feature(row.name, feature, candidates, histogram=True)


def _no_feature(
    monitor: str, feature: str, runs: Any, *, histogram: bool = False
) -> FeatureNotFound:
    known = sorted({f for r in runs for f in (r.results or {}).get("features", {})})
    what = "a histogram of" if histogram else "a distance for"
    hint = f"its features: {', '.join(known)}" if known else "run it once a baseline is set"
    if histogram and known and feature in known:
        hint = f"its runs before histograms were stored have none: `cloche monitors run {monitor}`"
    return FeatureNotFound(f"no run of monitor {monitor!r} stored {what} {feature!r}", hint=hint)
