"""What the sampler reads from a server's metrics folder, and where a new series starts."""

from __future__ import annotations

import os
from pathlib import Path

from cloche.monitoring.traffic_maths import Counts
from cloche.monitoring.traffic_samples import (
    read_totals,
    sampler_lock,
    until_next,
    zero_starts,
)
from cloche.serving.metrics import WorkerMetrics, publish


def _publish(folder: Path, pid: int, *calls: tuple[str, int, float]) -> None:
    m = WorkerMetrics()
    for deployment, status, seconds in calls:
        m.request("churn", deployment, status, seconds)
    snap = m.snapshot({})
    snap["pid"], snap["instance"] = pid, f"{pid}-x"
    publish(folder, snap)


def test_every_workers_counters_add_up_per_deployment_and_outcome(tmp_path: Path) -> None:
    _publish(tmp_path, os.getpid(), ("churn:1", 200, 0.003), ("churn:1", 422, 0.001))
    _publish(tmp_path, 2**22 + 7, ("churn:1", 200, 0.003), ("churn:2", 503, 0.3))  # a dead one
    totals = read_totals(tmp_path)
    one, two = totals[("churn", "churn:1")], totals[("churn", "churn:2")]
    assert (one.ok, one.client_errors, one.server_errors) == (2, 1, 0)
    assert sum(one.latency) == 3 and one.latency[2] == 2
    assert (two.requests, two.server_errors) == (1, 1)


def test_an_empty_or_missing_folder_has_no_counters(tmp_path: Path) -> None:
    assert read_totals(tmp_path / "none") == {}


def test_a_deployment_seen_for_the_first_time_starts_from_zero() -> None:
    totals = {("churn", "churn:1"): Counts(5, latency=(5, 0)), ("churn", "churn:2"): Counts(1)}
    starts = zero_starts(totals, {("churn", "churn:1")})
    assert starts == {("churn", "churn:2"): Counts()}
    assert zero_starts({("e", "d"): Counts(3, latency=(3, 0))}, set()) == {
        ("e", "d"): Counts(latency=(0, 0))
    }


def test_samples_are_taken_on_the_steps_boundaries() -> None:
    assert until_next(100.0, 10) == 10
    assert until_next(103.5, 10) == 6.5


def test_one_holder_of_a_serverssampler_lock_at_a_time(tmp_path: Path) -> None:
    lock = tmp_path / "run" / "traffic-sampler.lock"
    with sampler_lock(lock) as first, sampler_lock(lock) as second:
        assert (first, second) == (True, False)
    with sampler_lock(lock) as after:
        assert after  # the holder is gone: another worker takes over
