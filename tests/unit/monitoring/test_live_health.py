"""An endpoint's live health from payload-log rows: 5xx share, request count and latency, for
the whole endpoint or one version, and the verdict against limits."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from cloche.logs.table import SCHEMA
from cloche.monitoring.live_health import LiveHealth, failures, live_health

MOMENT = datetime(2025, 3, 1, 12, tzinfo=UTC)


def _rows(*rows: dict[str, Any]) -> pa.Table:
    base = {"time": MOMENT, "endpoint": "churn", "model": "churn", "version": 1,
            "shadow": False, "kind": "predict", "status": 200, "latency_ms": 5.0}  # fmt: skip
    return pa.Table.from_pylist([{**base, **row} for row in rows], schema=SCHEMA)


def test_error_rate_is_the_share_of_5xx_and_4xx_are_not_errors() -> None:
    table = _rows({"status": 500}, {"status": 503}, {"status": 404}, {}, {})
    found = live_health(table)
    assert found.requests == 5 and found.error_rate == 2 / 5


def test_one_version_is_measured_apart_from_the_others() -> None:
    table = _rows({"version": 2, "status": 500}, {"version": 2}, {}, {}, {})
    canary = live_health(table, model="churn", version=2)
    assert canary.requests == 2 and canary.error_rate == 0.5
    assert live_health(table, model="churn", version=1).error_rate == 0.0


def test_shadow_answers_and_explanations_are_not_live_requests() -> None:
    table = _rows({"shadow": True, "status": 500}, {"kind": "explain", "status": 500}, {})
    assert live_health(table) == LiveHealth(1, 0.0, 5.0, 5.0)


def test_latency_percentiles_are_values_at_their_rank() -> None:
    table = _rows(*({"latency_ms": float(ms)} for ms in range(1, 101)))
    found = live_health(table)
    assert (found.p50_ms, found.p99_ms) == (50.0, 99.0)


def test_no_traffic_is_a_failure_not_a_pass() -> None:
    found = live_health(_rows({"model": "other"}), model="churn")
    assert found == LiveHealth(0, 0.0, 0.0, 0.0)
    reasons = failures(found, max_error_rate=0.05, max_p99_ms=None, min_requests=1)
    assert reasons == ["0 requests in the window, fewer than 1"]


def test_each_limit_crossed_is_a_reason() -> None:
    health = LiveHealth(requests=10, error_rate=0.2, p50_ms=5.0, p99_ms=80.0)
    assert failures(health, max_error_rate=0.05, max_p99_ms=50.0, min_requests=1) == [
        "error rate 20.00% > 5.00%",
        "p99 latency 80.0 ms > 50 ms",
    ]
    assert failures(health, max_error_rate=0.2, max_p99_ms=None, min_requests=10) == []
