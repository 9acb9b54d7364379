"""Monitor runs and traffic samples as monitoring writes them, for the pages that chart them.

Monitor runs: a month of hourly runs per monitor given, each run's ``features`` computed
by the monitoring service's own comparison (``compare_features``) over profiles of generated
data, some windows drifted, so the heat table and histograms are the real shapes and sizes.
Traffic samples: a day of cumulative counters for the given endpoints' deployments from two
servers, raw every 10 s for the last hour and one a minute before, as the sampler keeps them.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from cloche.monitoring.entities import MonitorConfig
from cloche.monitoring.profiles import Profile
from cloche.monitoring.runs import compare_features
from cloche.serving.metrics import LATENCY_BUCKETS_S

FEATURES = [f"f{i}" for i in range(8)]
RUNS_PER_MONITOR = 720  # a month of hourly runs
SOURCES = ("host-a:srv1", "host-b:srv2")


def feature_results(rng_seed: int = 0, variants: int = 6) -> list[dict[str, Any]]:
    """``variants`` windows' per-feature results, from calm to drifted."""
    rng = np.random.default_rng(rng_seed)
    kinds = dict.fromkeys(FEATURES, "numeric")

    def profile(shift: float) -> Profile:
        columns = {
            f: rng.normal(shift * (i % 3), 1 + shift / 4, 2000) for i, f in enumerate(FEATURES)
        }
        return Profile.from_table(pa.table(columns), kinds)

    baseline, config = profile(0.0), MonitorConfig(alerts=["log"])
    return [
        compare_features(baseline, profile(v * 0.3), profile(v * 0.5), kinds, config)
        for v in range(variants)
    ]


def monitor_runs(monitors: list[str], now: datetime, rng: random.Random) -> list[dict[str, Any]]:
    variants = feature_results()
    rows = []
    for monitor_id in monitors:
        for hour in range(RUNS_PER_MONITOR, 0, -1):
            end = now - timedelta(hours=hour)
            features = variants[rng.randrange(len(variants))]
            breaches = [key for f in features.values() for key in f["breaches"]]
            rows.append({
                "monitor_id": monitor_id, "started_at": end,
                "finished_at": end + timedelta(seconds=3),
                "window_start": end - timedelta(hours=1), "window_end": end,
                "status": "breached" if breaches else "ok", "rows": rng.randrange(2000, 50_000),
                "breaches": breaches,
                "results": {"model": "model-00001:1", "features": features, "health": {},
                            "sources": {"window": 2, "previous_window": 2}},
                "message": f"{len(breaches)} breaches" if breaches else "ok",
            })  # fmt: skip
    return rows


def traffic_samples(
    endpoints: list[tuple[str, list[str]]], now: datetime, rng: random.Random
) -> list[dict[str, Any]]:
    """``endpoints``: (name, its deployments' refs) of the endpoints to give a history."""
    moments = [now - timedelta(seconds=10 * i) for i in range(360)]
    moments += [now - timedelta(hours=1, minutes=i) for i in range(1, 24 * 60 + 6)]
    moments.sort()
    rows = []
    for endpoint, deployments in endpoints:
        for source in SOURCES:
            for deployment in deployments:
                rows += _series(source, endpoint, deployment, moments, rng)
    return rows


def _series(
    source: str, endpoint: str, deployment: str, moments: list[datetime], rng: random.Random
) -> list[dict[str, Any]]:
    ok = client = server = 0
    latency = [0] * (len(LATENCY_BUCKETS_S) + 1)
    rows, last = [], moments[0]
    for at in moments:
        seconds = (at - last).total_seconds()
        last = at
        served = int(seconds * rng.uniform(20, 80))
        ok += served
        client += served // 200
        server += served // 1000
        for _ in range(4):  # spread over a few buckets: quantiles that move
            latency[rng.randrange(2, 8)] += served // 4
        rows.append({
            "source": source, "at": at, "resolution_s": 10 if (moments[-1] - at).total_seconds()
            < 3600 else 60, "endpoint": endpoint, "deployment": deployment, "ok": ok,
            "client_errors": client, "server_errors": server, "latency": list(latency),
        })  # fmt: skip
    return rows
