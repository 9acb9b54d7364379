"""Payload-log retention: by age, then oldest first by size; never the open segment."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from cloche.logs import service as logs
from cloche.logs.retention import apply_retention
from cloche.serving.payload_log import SEGMENT_SUFFIX, PayloadLog, RetentionCounts, encode_row

NOW = datetime(2026, 11, 25, 12, 30, tzinfo=UTC)


def _line(at: datetime, i: int, endpoint: str = "churn") -> bytes:
    ms = int(at.timestamp() * 1000)
    return encode_row(
        (ms, f"r{i}", endpoint, "churn", 1, 7, False, 200, 1.5, np.array([[float(i), 2.0]]),
         {"predict": np.array([1])}, None, "predict")
    )  # fmt: skip


def _logged(
    root: Path, hours_ago: list[float], rows_each: int = 3, now: datetime = NOW
) -> PayloadLog:
    """Compacted hours ``hours_ago`` (3 rows each), and an open segment holding one more row."""
    log = PayloadLog(root)
    i = 0
    for ago in hours_ago:
        for _ in range(rows_each):
            log.write([_line(now - timedelta(hours=ago), i, "churn" if i % 2 else "other")])
            i += 1
    log.close()
    logs.compact(root)
    log = PayloadLog(root)
    log.write([_line(now, 999)])  # the segment being written
    return log


def _hours(root: Path) -> list[str]:
    return sorted(
        f"{p.parent.name}/{p.name}" for p in root.glob("endpoint=*/date=*/hour=*") if p.is_dir()
    )


def test_hours_older_than_the_maximum_age_are_removed_and_counted(tmp_path: Path) -> None:
    log = _logged(tmp_path, [24 * 40, 24 * 36, 24 * 2, 0])
    removed = apply_retention(tmp_path, max_age=timedelta(days=35), max_bytes=None, now=NOW)
    assert removed.rows == 6 and removed.files >= 2 and removed.bytes > 0
    assert all("2026-10" not in hour for hour in _hours(tmp_path))  # 36 and 40 days ago: gone
    read = logs.read_log(tmp_path, "churn")["request_id"].to_pylist()
    assert "r999" in read and len(read) == 4  # the open segment and the young hours stay
    log.close()


def test_over_the_size_cap_the_oldest_hours_go_first_but_never_the_current(tmp_path: Path) -> None:
    log = _logged(tmp_path, [5, 4, 3, 0])
    before = _hours(tmp_path)
    removed = apply_retention(tmp_path, max_age=None, max_bytes=1, now=NOW)
    assert removed.rows == 9  # the three past hours; the current hour is being written
    assert _hours(tmp_path) == [h for h in before if h.endswith("hour=12")]
    assert list((tmp_path / "segments").glob(f"*{SEGMENT_SUFFIX}"))  # the open segment stays
    log.close()


def test_under_both_limits_nothing_is_removed(tmp_path: Path) -> None:
    log = _logged(tmp_path, [3, 2])
    before = _hours(tmp_path)
    removed = apply_retention(tmp_path, max_age=timedelta(days=1), max_bytes=2**30, now=NOW)
    assert removed.as_dict() == {"files": 0, "bytes": 0, "rows": 0}
    assert _hours(tmp_path) == before
    log.close()


def test_the_compaction_child_reports_what_retention_removed(tmp_path: Path) -> None:
    # The child reads the clock: these times are relative to it, not to NOW.
    _logged(tmp_path, [24 * 400, 24 * 400 + 1], now=datetime.now(UTC)).close()
    done = subprocess.run(
        [sys.executable, "-m", "cloche.logs.compact", str(tmp_path), "--max-age-days=35"],
        capture_output=True, check=True, timeout=120,
    )  # fmt: skip
    report = json.loads(done.stdout)
    assert report["rows"] == 1 and report["removed"]["rows"] == 6
    counts = RetentionCounts()
    counts.add(done.stdout)
    counts.add(b"not a report")
    assert counts.gauges()["cloche_payload_log_retention_rows_total"] == {"": 6.0}
