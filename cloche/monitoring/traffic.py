"""An endpoint's traffic over the last hour or day, per deployment: requests/s, error rates and
latency quantiles, from the counters each server samples (``traffic_samples.py``)."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import select

from cloche.endpoints.service import get_endpoint
from cloche.errors import BadRequest
from cloche.monitoring.traffic_maths import (
    Counts,
    bucketed_increases,
    histogram_quantile,
    rate,
    share,
)
from cloche.serving.metrics import LATENCY_BUCKETS_S
from cloche.store.store import Store
from cloche.store.tables import TrafficSampleRow, utcnow

Window = Literal["1h", "1d"]
WINDOWS: dict[str, tuple[int, int]] = {"1h": (10, 360), "1d": (60, 1440)}  # step s, points
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
    by_deployment = _increases(store, endpoint, step=step, first=first, last=end)
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
        deployments=[_series(n, by_deployment.get(n, {}), labels, step) for n in names],
    )


def _increases(
    store: Store, endpoint: str, *, step: int, first: float, last: float
) -> dict[str, dict[float, Counts]]:
    """Per deployment, per interval: the increase of its counters, every server's added up."""
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
                TrafficSampleRow.latency,
            ).where(TrafficSampleRow.endpoint == endpoint, TrafficSampleRow.at >= since)
        ).all()
    series: dict[tuple[str, str], list[tuple[float, Counts]]] = defaultdict(list)
    for source, deployment, at, ok, client, server, latency in rows:
        at = at if at.tzinfo else at.replace(tzinfo=UTC)  # SQLite returns naive UTC
        series[(source, deployment)].append(
            (at.timestamp(), Counts(ok, client, server, tuple(latency)))
        )
    out: dict[str, dict[float, Counts]] = defaultdict(dict)
    for (_, deployment), samples in series.items():
        found = bucketed_increases(samples, step=step, first=first, last=last)
        into = out[deployment]
        for label, counts in found.items():
            into[label] = into.get(label, Counts()) + counts
    return out


def _series(
    deployment: str, found: dict[float, Counts], labels: list[float], step: int
) -> DeploymentTraffic:
    requests: list[int | None] = []
    per_s, client, server = [], [], []
    quantiles: dict[float, list[float | None]] = {0.5: [], 0.95: [], 0.99: []}
    for label in labels:
        counts = found.get(label)
        n = counts.requests if counts is not None else None
        requests.append(n)
        per_s.append(rate(n, step))
        client.append(share(counts.client_errors, n) if counts and n else None)
        server.append(share(counts.server_errors, n) if counts and n else None)
        for q, values in quantiles.items():
            latency = counts.latency if counts is not None else ()
            values.append(histogram_quantile(q, latency, LATENCY_BUCKETS_S) if latency else None)
    return DeploymentTraffic(
        deployment=deployment,
        requests=requests,
        requests_per_s=per_s,
        client_error_rate=client,
        server_error_rate=server,
        p50_s=quantiles[0.5],
        p95_s=quantiles[0.95],
        p99_s=quantiles[0.99],
        total_requests=sum(n or 0 for n in requests),
    )
