import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from cloche.errors import InvalidInput
from cloche.logs import service as logs
from cloche.serving.payload_log import SEGMENT_SUFFIX, PayloadLog, encode_row, is_closed


def _entry(i: int, endpoint: str = "churn", status: int = 200, **kw) -> bytes:
    values = {
        "time": 1_764_000_000_000 + i,
        "request_id": f"r{i}",
        "endpoint": endpoint,
        "model": "churn",
        "version": 1,
        "deployment_id": 7,
        "shadow": False,
        "status": status,
        "latency_ms": 1.5,
        "inputs": np.array([[float(i), 2.0]]),
        "outputs": {"predict": np.array([i % 2])},
        "error": None,
        "kind": "predict",
    } | kw
    return encode_row(tuple(values.values()))


def test_written_rows_are_readable_at_once_and_after_compaction(tmp_path: Path) -> None:
    log = PayloadLog(tmp_path)
    log.write([_entry(i) for i in range(3)])
    log.write([_entry(3, endpoint="other")])
    table = logs.read_log(tmp_path, "churn")
    assert table["request_id"].to_pylist() == ["r0", "r1", "r2"]
    assert logs.rows(table)[1]["inputs"] == [[1.0, 2.0]]
    assert logs.rows(table)[1]["outputs"] == {"predict": [1]}
    assert logs.compact(tmp_path) == 0  # the open segment is left alone
    log.close()
    assert logs.compact(tmp_path) == 4
    assert not list((tmp_path / "segments").glob(f"*{SEGMENT_SUFFIX}"))
    parts = sorted(p.relative_to(tmp_path).parts[:3] for p in tmp_path.rglob("*.parquet"))
    assert parts[0][0] == "endpoint=churn" and parts[-1][0] == "endpoint=other"
    assert logs.read_log(tmp_path, "churn")["request_id"].to_pylist() == ["r0", "r1", "r2"]


def test_a_projection_reads_only_the_asked_columns_from_partitions_and_segments(
    tmp_path: Path,
) -> None:
    log = PayloadLog(tmp_path)
    log.write([_entry(i) for i in range(3)])
    log.close()
    logs.compact(tmp_path)
    log = PayloadLog(tmp_path)
    log.write([_entry(3)])  # still in a segment
    table = logs.read_log(tmp_path, "churn", columns=["request_id"])
    assert table.column_names == ["time", "request_id"]
    assert table["request_id"].to_pylist() == ["r0", "r1", "r2", "r3"]
    with pytest.raises(InvalidInput, match="no column 'nope'"):
        logs.read_log(tmp_path, "churn", columns=["nope"])
    log.close()


def test_a_torn_tail_loses_only_the_unfinished_batch(tmp_path: Path) -> None:
    log = PayloadLog(tmp_path)
    log.write([_entry(0)])
    log.write([_entry(1)])
    segment = next((tmp_path / "segments").glob(f"*{SEGMENT_SUFFIX}"))
    data = segment.read_bytes()
    log.close()
    segment.write_bytes(data[:-10])  # a writer killed in the middle of its last line
    assert logs.read_log(tmp_path, "churn")["request_id"].to_pylist() == ["r0"]


def test_a_failing_sink_counts_what_it_drops(tmp_path: Path) -> None:
    (tmp_path / "segments").write_text("not a folder")
    log = PayloadLog(tmp_path)
    log.write([_entry(0), _entry(1)])
    assert (log.logged, log.dropped) == (0, 2)


def test_segments_rotate_at_the_size_cap(tmp_path: Path) -> None:
    log = PayloadLog(tmp_path, rotate_bytes=1)
    log.write([_entry(0)])
    log.write([_entry(1)])
    assert len(log.rotated) == 2 and all(is_closed(p) for p in log.rotated)


def test_mixed_type_rows_are_logged(tmp_path: Path) -> None:
    log = PayloadLog(tmp_path)
    rows = np.empty((1, 2), dtype=object)
    rows[0] = ["gold", 2.5]
    log.write([_entry(0, inputs=rows, outputs={"predict": np.array(["yes"], dtype=object)})])
    log.close()
    (row,) = logs.rows(logs.read_log(tmp_path, "churn"))
    assert row["inputs"] == [["gold", 2.5]] and row["outputs"] == {"predict": ["yes"]}


def test_failed_requests_keep_their_error_and_raw_body(tmp_path: Path) -> None:
    log = PayloadLog(tmp_path)
    log.write([_entry(0, status=422, inputs="{bad", outputs=None, error="not valid JSON")])
    log.close()
    (row,) = logs.rows(logs.read_log(tmp_path, "churn"))
    assert (row["status"], row["inputs"], row["error"]) == (422, "{bad", "not valid JSON")


def test_since_reads_durations_and_iso_times() -> None:
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    assert logs.parse_since("90m", now=now) == now - timedelta(minutes=90)
    assert logs.parse_since("2026-11-25T10:00:00") == datetime(2026, 11, 25, 10, tzinfo=UTC)
    with pytest.raises(InvalidInput, match="cannot read the time 'yesterday'") as info:
        logs.parse_since("yesterday")
    assert "30m, 1h, 7d" in (info.value.hint or "")


def test_compaction_runs_as_a_command_and_one_at_a_time(tmp_path: Path) -> None:
    import fcntl
    import subprocess
    import sys

    log = PayloadLog(tmp_path)
    log.write([_entry(0), _entry(1)])
    log.close()
    with (tmp_path / "compact.lock").open("ab") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert logs.compact(tmp_path) == 0  # another compaction holds the root
    done = subprocess.run(
        [sys.executable, "-m", "cloche.logs.compact", str(tmp_path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(done.stdout)["rows"] == 2
    assert logs.read_log(tmp_path, "churn")["request_id"].to_pylist() == ["r0", "r1"]


class _Meta:
    request_id, started, time_ms = 'r"1', 10.0, 1_764_000_000_000


@pytest.mark.parametrize(
    ("X", "out"),
    [
        (np.arange(6.0).reshape(3, 2) / 7, {"predict": np.array([0, 1, 1])}),
        (
            np.arange(3, dtype=np.float32).reshape(3, 1),
            {"predict": np.arange(3) % 2, "probabilities": np.linspace(0, 1, 6).reshape(3, 2)},
        ),
        (np.array([[np.nan, 1.0]]), {"predict": np.array(["yes"], dtype=object)}),
        (np.array([["a", 1.5]], dtype=object), {"predict": np.array([True])}),
    ],
    ids=["numeric", "two-outputs", "string-labels", "object-inputs"],
)
def test_a_deployments_lines_are_those_of_encode_row(X, out) -> None:
    from cloche.serving.payload_log import LineEncoder

    encoder = LineEncoder("churn", "churn", 1, 7, False)
    row = (_Meta.time_ms, _Meta.request_id, "churn", "churn", 1, 7, False, 200, 10_000.0,
           X, out, None, "predict")  # fmt: skip
    assert encoder.answered(_Meta, X, out, now=20.0) == encode_row(row)


def test_lines_from_before_the_kind_column_still_read(tmp_path: Path) -> None:
    log = PayloadLog(tmp_path)
    log.write([_entry(0)])
    old = _entry(1).replace(b',"predict"]\t', b"]\t")  # a line as the previous release wrote it
    log.write([old])
    log.close()
    table = logs.read_log(tmp_path, "churn")
    assert table["request_id"].to_pylist() == ["r0", "r1"]
    assert table["kind"].to_pylist() == ["predict", None]
