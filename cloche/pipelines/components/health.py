"""``check_endpoint``: an endpoint's (or one deployment's) live error rate, request count and
latency over a recent window, from its payload log, with a verdict against limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import cloche
from cloche.logs.service import MAX_ROWS
from cloche.monitoring.live_health import failures, live_health
from cloche.pipelines.component import component


class EndpointCheck(NamedTuple):
    healthy: bool
    requests: int
    error_rate: float
    p50_ms: float
    p99_ms: float
    reasons: list  # type: ignore[type-arg]


@component
def check_endpoint(
    endpoint: str,
    model: str = "",
    window_seconds: int = 300,
    max_error_rate: float = 0.05,
    max_p99_ms: float = 0.0,
    min_requests: int = 1,
) -> EndpointCheck:
    """The live requests of the last ``window_seconds`` (those answered by the version
    ``model`` names, e.g. a canary's ``churn:3``, when given): healthy when there were at least
    ``min_requests``, at most ``max_error_rate`` of them answered 5xx, and (when
    ``max_p99_ms`` > 0) p99 latency within it. The error rate is a monitor's: 5xx over all."""
    since = datetime.now(UTC) - timedelta(seconds=window_seconds)
    with cloche.Client() as client:
        name, version = "", None
        if model:
            found = client.models.show(model)
            name, version = found.name, found.version
        rows = client.logs.read(endpoint, since=since, limit=MAX_ROWS)
    health = live_health(rows, model=name, version=version)
    reasons = failures(
        health,
        max_error_rate=max_error_rate,
        max_p99_ms=max_p99_ms or None,
        min_requests=min_requests,
    )
    print(
        f"{endpoint}{f' ({model})' if model else ''}: {health.requests} requests, "
        f"error rate {health.error_rate:.2%}, p50 {health.p50_ms:.1f} ms, "
        f"p99 {health.p99_ms:.1f} ms; " + ("; ".join(reasons) if reasons else "healthy")
    )
    return EndpointCheck(not reasons, *health, reasons)
