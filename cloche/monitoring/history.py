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
        query = (
            select(*_RUN_COLUMNS, _entry(feature))
            .where(MonitorRunRow.monitor_id == row.id)
            .order_by(MonitorRunRow.window_end.desc(), MonitorRunRow.id.desc())
            .limit(limit)
        )
        runs = session.execute(query).all()
        name = row.name
        points = [p for r in reversed(runs) if (p := _point(r, feature)) is not None]
        if not points and runs:
            raise _no_feature(name, feature, _known(session, row.id, limit))
    return FeatureHistory(monitor=name, feature=feature, points=points)


# A run's results hold every feature's figures and histogram (kilobytes each); a chart of one
# feature asks the database for that feature's entry alone.
_RUN_COLUMNS = (
    MonitorRunRow.id,
    MonitorRunRow.window_start,
    MonitorRunRow.window_end,
    MonitorRunRow.status,
)


def _entry(feature: str, *below: str) -> Any:
    """The column expression of ``feature``'s stored entry (``below``: a key inside it)."""
    if '"' in feature or "\\" in feature:  # not addressable in SQLite's JSON path syntax
        return MonitorRunRow.results
    return MonitorRunRow.results[("features", feature, *below)]


def _unwrap(value: Any, feature: str, *below: str) -> Any:
    """The entry ``_entry`` selected; from the whole results when it selected them."""
    if '"' not in feature and "\\" not in feature:
        return value
    found = (value or {}).get("features", {}).get(feature) or {}
    for key in below:
        found = found.get(key) or {}
    return found


def _point(run: Any, feature: str) -> FeaturePoint | None:
    entry = _unwrap(run[4], feature)
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


def _known(session: Any, monitor_id: str, limit: int) -> list[str]:
    """The features the newest ``limit`` runs stored (for the error that names them)."""
    query = (
        select(MonitorRunRow.results)
        .where(MonitorRunRow.monitor_id == monitor_id)
        .order_by(MonitorRunRow.id.desc())
        .limit(limit)
    )
    return sorted(
        {f for results in session.scalars(query) for f in (results or {}).get("features", {})}
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
        query = select(*_RUN_COLUMNS, _entry(feature, "histogram")).where(
            MonitorRunRow.monitor_id == row.id
        )
        if run is not None:
            candidates = list(session.execute(query.where(MonitorRunRow.id == run)))
            if not candidates:
                raise MonitorRunNotFound(
                    f"monitor {row.name!r} has no run {run}",
                    hint=f"`cloche monitors runs {row.name}` lists its runs",
                )
        else:
            # The newest run first, alone: it holds the histogram unless the feature was not
            # compared then, and the database extracts the entry from each row it sends.
            newest = query.order_by(MonitorRunRow.id.desc())
            candidates = list(session.execute(newest.limit(1)))
            if candidates and not _unwrap(candidates[0][4], feature, "histogram"):
                candidates += session.execute(newest.offset(1).limit(MAX_RUNS - 1))
        for candidate in candidates:
            if histogram := _unwrap(candidate[4], feature, "histogram"):
                return FeatureHistogram(
                    monitor=row.name,
                    feature=feature,
                    run=candidate.id,
                    window_start=audit.as_utc(candidate.window_start),
                    window_end=audit.as_utc(candidate.window_end),
                    **histogram,
                )
        known = _known(session, row.id, MAX_RUNS) if candidates else []
        raise _no_feature(row.name, feature, known, histogram=True)


def _no_feature(
    monitor: str, feature: str, known: list[str], *, histogram: bool = False
) -> FeatureNotFound:
    what = "a histogram of" if histogram else "a distance for"
    hint = f"its features: {', '.join(known)}" if known else "run it once a baseline is set"
    if histogram and known and feature in known:
        hint = f"its runs before histograms were stored have none: `cloche monitors run {monitor}`"
    return FeatureNotFound(f"no run of monitor {monitor!r} stored {what} {feature!r}", hint=hint)
