"""An endpoint's live health from its payload-log rows: requests, the share answered with a
5xx (the error rate a monitor's health check uses), and latency percentiles, optionally for one
deployed version only (a canary), with a verdict against given limits."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cloche.monitoring.columns import live_rows


class LiveHealth(NamedTuple):
    requests: int
    error_rate: float  # 0.0 when there was no request
    p50_ms: float
    p99_ms: float


def live_health(rows: pa.Table, *, model: str = "", version: int | None = None) -> LiveHealth:
    """Health of the live requests among ``rows`` (the payload log's schema), those answered by
    ``model`` (and ``version``) only when given. Percentiles as a monitor computes them
    (numpy's "inverted_cdf", the value at that rank)."""
    rows = live_rows(rows)
    if model:
        rows = rows.filter(pc.equal(rows["model"], model))
    if version is not None:
        rows = rows.filter(pc.equal(rows["version"], version))
    if not rows.num_rows:
        return LiveHealth(0, 0.0, 0.0, 0.0)
    status = rows["status"].to_numpy(zero_copy_only=False)
    latency = rows["latency_ms"].to_numpy(zero_copy_only=False).astype(float)
    p50, p99 = np.percentile(latency, [50, 99], method="inverted_cdf")
    errors = int((status >= 500).sum())
    return LiveHealth(rows.num_rows, errors / rows.num_rows, float(p50), float(p99))


def failures(
    health: LiveHealth, *, max_error_rate: float, max_p99_ms: float | None, min_requests: int
) -> list[str]:
    """Why ``health`` fails the limits (empty: it passes). Too few requests is a failure: no
    traffic is no evidence that a deployment is healthy."""
    reasons = []
    if health.requests < min_requests:
        reasons.append(f"{health.requests} requests in the window, fewer than {min_requests}")
    if health.requests and health.error_rate > max_error_rate:
        reasons.append(f"error rate {health.error_rate:.2%} > {max_error_rate:.2%}")
    if max_p99_ms is not None and health.requests and health.p99_ms > max_p99_ms:
        reasons.append(f"p99 latency {health.p99_ms:.1f} ms > {max_p99_ms:g} ms")
    return reasons
