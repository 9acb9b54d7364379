"""Monitor runs from the profiles compaction writes beside the payload log: the same verdicts
and (within the sketches' bounds) the same figures as from the raw rows, without reading the
rows of the slices a window wholly covers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cloche.auth.roles import LOCAL_USER
from cloche.config import Settings
from cloche.endpoints import service as endpoints
from cloche.logs import compact
from cloche.logs.service import log_root, partition_files
from cloche.monitoring import log_profiles, runs, service, window
from cloche.monitoring.entities import MonitorConfig, MonitorRun
from cloche.registry.inspection import inspect_here
from cloche.registry.upload import upload_model
from cloche.serving.payload_log import PayloadLog, encode_row
from cloche.store.store import Store
from tests.integration.test_monitors import FEATURES, NOW, log_traffic


@pytest.fixture
def churn(settings: Settings, sklearn_model_file: Path, tmp_path: Path) -> Iterator[Store]:
    rng = np.random.default_rng(0)
    baseline = tmp_path / "baseline.parquet"
    pq.write_table(pa.table({f: rng.normal(size=5_000) for f in FEATURES}), baseline)
    store = Store.open(settings)
    upload_model(
        store,
        principal=LOCAL_USER,
        inspector=inspect_here,
        source=sklearn_model_file,
        name="churn",
        baseline=baseline,
    )
    endpoints.create_endpoint(store, name="churn")
    endpoints.deploy(store, endpoint="churn", ref="churn:1")
    yield store
    store.close()


def two_hours(store: Store) -> None:
    """An undrifted hour, then an hour drifted on spend and age."""
    log_traffic(store, NOW - timedelta(hours=2), 3_000, {})
    log_traffic(store, NOW - timedelta(hours=1), 3_000, {"spend": 2.0, "age": -2.0})


def compact_log(store: Store) -> None:
    """What `cloche up` runs in its child process: compaction, then profiling."""
    assert compact.main([str(log_root(store.home))], now=NOW) == 0


def assert_same_figures(profiled: MonitorRun, raw: MonitorRun) -> None:
    assert profiled.status == raw.status and profiled.rows == raw.rows
    assert sorted(profiled.breaches) == sorted(raw.breaches)
    for name in FEATURES:
        for check in ("skew", "drift"):
            mine = profiled.results["features"][name][check]
            theirs = raw.results["features"][name][check]
            # Both are sketch values: one sketch of the rows, or several merged ones.
            bound = mine["error_bound"] + theirs["error_bound"]
            assert mine["value"] == pytest.approx(theirs["value"], abs=bound)
        quality = profiled.results["features"][name]["quality"]
        for rule, verdict in raw.results["features"][name]["quality"].items():
            # out_of_range_rate may be read from a sketch's CDF: within its rank error.
            assert quality[rule]["value"] == pytest.approx(verdict["value"], abs=0.03)
            assert quality[rule]["breached"] == verdict["breached"]
    for key in ("error_rate", "requests_per_s", "p50_ms", "p99_ms"):
        assert profiled.results["health"][key] == raw.results["health"][key]


def test_a_run_merges_the_profiles_of_compacted_partitions_instead_of_reading_rows(
    churn: Store, settings: Settings
) -> None:
    service.create_monitor(churn, endpoint="churn", config=MonitorConfig())
    two_hours(churn)
    raw = runs.run_monitor(churn, "churn", settings=settings, now=NOW)  # segments: rows
    assert raw.results["sources"]["window"]["rows_read"] == 3_000

    compact_log(churn)
    files = partition_files(log_root(churn.home), "churn")
    assert len(files) == 2
    assert all(log_profiles.profile_path(f).exists() for f in files)  # written by compaction
    profiled = runs.run_monitor(churn, "churn", settings=settings, now=NOW)

    sources = profiled.results["sources"]["window"]
    assert sources["rows_read"] == 0 and sources["files_profiled_now"] == 0
    assert sources["profiled_pieces"] == 1  # the whole hour's profile
    assert sorted(profiled.breaches) == ["drift:age", "drift:spend", "skew:age", "skew:spend"]
    assert_same_figures(profiled, raw)


def test_a_window_that_cuts_slices_reads_only_their_rows(churn: Store, settings: Settings) -> None:
    service.create_monitor(churn, endpoint="churn", config=MonitorConfig(window_s=3600))
    two_hours(churn)
    later = NOW - timedelta(minutes=22, seconds=30)  # cuts a 5-minute slice at both edges
    raw = runs.run_monitor(churn, "churn", settings=settings, now=later)
    compact_log(churn)
    profiled = runs.run_monitor(churn, "churn", settings=settings, now=later)

    sources = profiled.results["sources"]["window"]
    assert sources["partial_slices"] == 2
    # 250 rows per slice: the window holds half of each cut slice, 125 rows read from each;
    # the 11 slices it wholly covers come from their profiles.
    assert sources["rows_read"] == 250 and sources["profiled_pieces"] == 11
    assert_same_figures(profiled, raw)


def test_partitions_compacted_before_the_monitor_are_profiled_once_by_its_first_run(
    churn: Store, settings: Settings
) -> None:
    two_hours(churn)
    compact_log(churn)  # no monitor yet: nothing says what to profile
    files = partition_files(log_root(churn.home), "churn")
    assert not any(log_profiles.profile_path(f).exists() for f in files)

    service.create_monitor(churn, endpoint="churn", config=MonitorConfig())
    first = runs.run_monitor(churn, "churn", settings=settings, now=NOW)
    assert first.results["sources"]["window"]["files_profiled_now"] == 1
    assert all(log_profiles.profile_path(f).exists() for f in files)
    again = runs.run_monitor(churn, "churn", settings=settings, now=NOW)
    assert again.results["sources"]["window"]["files_profiled_now"] == 0
    assert_same_figures(again, first)


def test_a_changed_signature_rebuilds_the_profiles(churn: Store, settings: Settings) -> None:
    service.create_monitor(churn, endpoint="churn", config=MonitorConfig())
    two_hours(churn)
    compact_log(churn)
    root = log_root(churn.home)
    # A redeploy whose signature names three of the features: the old profiles do not fit.
    spec = window.record_spec(churn, "churn", {n: "numeric" for n in FEATURES[:3]})
    files = partition_files(root, "churn")
    assert all(log_profiles.load_profile(f, spec) is None for f in files)
    assert log_profiles.profile_log(root, now=NOW) == 2  # what the next compaction does
    assert all(log_profiles.load_profile(f, spec) is not None for f in files)


def line(at: datetime, i: int, **fields: Any) -> bytes:
    row: dict[str, Any] = {
        "status": 200,
        "shadow": False,
        "kind": "predict",
        "latency_ms": 4.0,
        "inputs": [[0.0, 0.0, 0.0, 0.0]],
    } | fields
    return encode_row(
        (
            int(at.timestamp() * 1000) + i,
            f"q{i}",
            "churn",
            "churn",
            1,
            1,
            row["shadow"],
            row["status"],
            row["latency_ms"],
            row["inputs"] if row["status"] == 200 else "bad body",
            {"predict": [1]} if row["status"] == 200 else None,
            None if row["status"] == 200 else "failed",
            row["kind"],
        )
    )


def test_profiles_leave_out_shadows_and_explanations_and_count_failures(
    churn: Store, settings: Settings
) -> None:
    service.create_monitor(churn, endpoint="churn", config=MonitorConfig(min_rows=1))
    at = NOW - timedelta(minutes=30)
    lines = [line(at, i) for i in range(90)]
    lines += [line(at, 100 + i, status=500, latency_ms=50.0) for i in range(10)]
    lines += [line(at, 200 + i, shadow=True, latency_ms=900.0) for i in range(40)]
    lines += [line(at, 300 + i, kind="explain", latency_ms=900.0) for i in range(40)]
    log = PayloadLog(log_root(churn.home))
    log.write(lines)
    log.close()
    compact_log(churn)
    run = runs.run_monitor(churn, "churn", settings=settings, now=NOW)
    assert run.results["sources"]["window"]["rows_read"] == 0
    assert run.rows == 90  # answered live rows only
    health = run.results["health"]
    assert health["error_rate"]["value"] == pytest.approx(0.1)
    assert health["p50_ms"]["value"] == 4.0 and health["p99_ms"]["value"] == 50.0
    assert run.results["performance"]["logged_rows"] is None  # no labels: the log is not read
