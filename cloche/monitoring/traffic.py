"""An endpoint's traffic over the last hour or day, per deployment: requests/s, error rates and
latency quantiles, from the counters each server samples (``traffic_samples.py``)."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field
from sqlalchemy import Text, cast, select

from cloche.endpoints.service import get_endpoint
from cloche.errors import BadRequest
from cloche.monitoring.traffic_maths import (
    Counts,
    bucketed_increases,
    bucketed_rows,
    histogram_quantiles,
    rate,
    share,
)
from cloche.serving.metrics import LATENCY_BUCKETS_S
from cloche.store.store import Store
from cloche.store.tables import TrafficSampleRow, utcnow

Window = Literal["1h", "1d"]
WINDOWS: dict[str, tuple[int, int]] = {"1h": (10, 360), "1d": (60, 1440)}  # step s, points
WIDTH = 3 + len(LATENCY_BUCKETS_S) + 1  # ok, client errors, server errors, latency buckets
QUANTILE_METHOD = (
    "linear interpolation inside the latency bucket holding the rank, as Prometheus's "
    "histogram_quantile does: exact only to within that bucket's bounds (latency_buckets_s); "
    "a quantile above the highest bound is reported as that bound"
)


class DeploymentTraffic(BaseModel):
    deployment: str = Field(description='model reference, e.g. "churn:3" ("-": not routed)')
    requests: list[int | None] = Field(description="requests answered in each interval")
    requests_per_s: list[float | None]
    client_error_rate: list[float | None] = Field(description="share of 4xx answers")
    server_error_rate: list[float | None] = Field(description="share of 5xx answers")
    p50_s: list[float | None]
    p95_s: list[float | None]
    p99_s: list[float | None]
    total_requests: int


class EndpointTraffic(BaseModel):
    endpoint: str
    window: Window
    step_s: int = Field(description="each point covers the step_s seconds up to its time")
    times: list[datetime] = Field(description="the end of each interval, UTC")
    latency_buckets_s: list[float] = Field(description="upper bounds of the latency buckets")
    quantile_method: str = QUANTILE_METHOD
    deployments: list[DeploymentTraffic]


def check_window(window: str) -> tuple[int, int]:
    if window not in WINDOWS:
        raise BadRequest(
            f"window {window!r} is not one of {', '.join(WINDOWS)}",
            hint="use window=1h (10 s points) or window=1d (1 min points)",
        )
    return WINDOWS[window]


def endpoint_traffic(
    store: Store, endpoint: str, window: str = "1h", *, now: datetime | None = None
) -> EndpointTraffic:
    """Per deployment of ``endpoint`` (those deployed now and any that served in the window),
    aligned points over the last hour (every 10 s) or day (every minute); every server's
    samples added up. An interval no sample covers is None: unknown, not zero.

    Latency quantiles are bucket-interpolated (``QUANTILE_METHOD``)."""
    step, points = check_window(window)
    deployed = get_endpoint(store, endpoint)  # EndpointNotFound
    end = math.floor((now or utcnow()).timestamp() / step) * step
    first = end - (points - 1) * step
    by_deployment = _increases(store, endpoint, step=step, first=first, points=points)
    names = [d.ref for d in deployed.deployments] + sorted(
        set(by_deployment) - {d.ref for d in deployed.deployments}
    )
    labels: list[float] = [first + i * step for i in range(points)]
    return EndpointTraffic(
        endpoint=endpoint,
        window=window,  # type: ignore[arg-type]  # checked above
        step_s=step,
        times=[datetime.fromtimestamp(t, UTC) for t in labels],
        latency_buckets_s=list(LATENCY_BUCKETS_S),
        deployments=[_series(n, by_deployment.get(n), points, step) for n in names],
    )


def _increases(
    store: Store, endpoint: str, *, step: int, first: float, points: int
) -> dict[str, np.ndarray]:
    """Per deployment, per interval (a row each): the increase of its counters (ok, client
    errors, server errors, then the latency buckets), every server's added up; NaN where no
    sample covers the interval. In arrays: a day of samples is thousands of rows."""
    last = first + (points - 1) * step
    since = datetime.fromtimestamp(first - step, UTC) - timedelta(minutes=2)  # a start point
    with store.transaction() as session:
        rows = session.execute(
            select(
                TrafficSampleRow.source,
                TrafficSampleRow.deployment,
                TrafficSampleRow.at,
                TrafficSampleRow.ok,
                TrafficSampleRow.client_errors,
                TrafficSampleRow.server_errors,
                # As text, decoded below in one call rather than once a row.
                cast(TrafficSampleRow.latency, Text),
            ).where(TrafficSampleRow.endpoint == endpoint, TrafficSampleRow.at >= since)
        ).all()
    latencies = json.loads("[" + ",".join(row[6] for row in rows) + "]")
    series: dict[tuple[str, str], list[tuple[float, list[int]]]] = defaultdict(list)
    for (source, deployment, at, ok, client, server, _), latency in zip(
        rows, latencies, strict=True
    ):
        at = at if at.tzinfo else at.replace(tzinfo=UTC)  # SQLite returns naive UTC
        series[(source, deployment)].append((at.timestamp(), [ok, client, server, *latency]))
    out: dict[str, np.ndarray] = {}
    for (_, deployment), samples in series.items():
        samples.sort(key=lambda s: s[0])
        labels, sums = _bucketed(samples, step=step, first=first, last=last)
        into = out.setdefault(deployment, np.full((points, WIDTH), np.nan))
        where = ((labels - first) // step).astype(np.int64)
        into[where] = np.nan_to_num(into[where]) + _fitted(sums)
    return out


def _bucketed(
    samples: list[tuple[float, list[int]]], *, step: int, first: float, last: float
) -> tuple[np.ndarray, np.ndarray]:
    """One server's increases per interval: its labels and their counters."""
    if len({len(counters) for _, counters in samples}) <= 1:
        return bucketed_rows(
            [at for at, _ in samples], [c for _, c in samples], step=step, first=first, last=last
        )
    # Another bucket layout inside the window (a new release): pairwise, as Counts.
    counted = [(at, Counts(c[0], c[1], c[2], tuple(c[3:]))) for at, c in samples]
    found = bucketed_increases(counted, step=step, first=first, last=last)
    fields = [_fitted(np.array([c._fields()], dtype=np.float64))[0] for c in found.values()]
    return np.array(list(found), dtype=np.float64), np.array(fields).reshape(-1, WIDTH)


def _fitted(sums: np.ndarray) -> np.ndarray:
    """Counters in this release's layout: latency counted in other buckets cannot be read
    against these bounds, so only its requests are kept."""
    if sums.shape[1] == WIDTH:
        return sums
    fitted = np.zeros((len(sums), WIDTH))
    fitted[:, :3] = sums[:, :3]
    return fitted


def _series(deployment: str, found: np.ndarray | None, points: int, step: int) -> DeploymentTraffic:
    if found is None:
        found = np.full((points, WIDTH), np.nan)
    covered = ~np.isnan(found[:, 0])
    counters = np.nan_to_num(found).astype(np.int64)
    totals = counters[:, :3].sum(axis=1)
    requests = [int(n) if c else None for n, c in zip(totals.tolist(), covered, strict=True)]
    quantiles = {
        q: histogram_quantiles(q, counters[:, 3:], LATENCY_BUCKETS_S) for q in (0.5, 0.95, 0.99)
    }
    return DeploymentTraffic(
        deployment=deployment,
        requests=requests,
        requests_per_s=[rate(n, step) for n in requests],
        client_error_rate=_shares(counters[:, 1], requests),
        server_error_rate=_shares(counters[:, 2], requests),
        # An interval with no sample has no quantile (its zero counts give None too).
        p50_s=quantiles[0.5],
        p95_s=quantiles[0.95],
        p99_s=quantiles[0.99],
        total_requests=sum(n or 0 for n in requests),
    )


def _shares(parts: np.ndarray, requests: list[int | None]) -> list[float | None]:
    return [share(p, n) if n else None for p, n in zip(parts.tolist(), requests, strict=True)]
