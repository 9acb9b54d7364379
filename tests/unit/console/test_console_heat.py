"""The heat table: features by check, a column per run that compared features, verdicts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cloche.console.charts.heat import Cell, heat_table
from cloche.monitoring.entities import MonitorRun

START = datetime(2026, 1, 1, tzinfo=UTC)


def _run(run_id: int, features: dict[str, Any] | None, status: str = "ok") -> MonitorRun:
    end = START + timedelta(hours=run_id)
    results = {"features": features} if features is not None else {}
    return MonitorRun(
        id=run_id,
        monitor="m",
        started_at=end,
        window_start=end - timedelta(hours=1),
        window_end=end,
        status=status,  # type: ignore[arg-type]
        rows=100,
        results=results,
    )


def _verdict(value: float | None, threshold: float = 0.3) -> dict[str, Any]:
    breached = value is not None and value > threshold
    return {"value": value, "threshold": threshold, "breached": breached, "metric": "js"}


def test_columns_are_runs_with_features_oldest_first_and_rows_feature_by_check() -> None:
    runs = [  # newest first, as the service lists them
        _run(3, {"spend": {"skew": _verdict(0.7), "drift": _verdict(0.5)}}, "breached"),
        _run(2, None, "no_data"),
        _run(1, {"spend": {"skew": _verdict(0.05)}, "age": {"skew": _verdict(0.2)}}),
    ]
    table = heat_table(runs)
    assert [r.id for r in table.runs] == [1, 3]
    assert [(r.feature, r.check) for r in table.rows] == [
        ("age", "skew"),
        ("spend", "skew"),
        ("spend", "drift"),
    ]
    age, spend_skew, spend_drift = table.rows
    assert age.cells[1] is None and not age.breached  # run 3 did not compute age
    assert [c.verdict for c in spend_skew.cells if c] == ["ok", "breached"]
    assert spend_drift.cells[0] is None and spend_drift.breached


def test_the_heat_level_grows_with_the_distance_to_the_threshold() -> None:
    levels = [Cell(v, 0.3, v > 0.3, "js").level for v in (0.1, 0.2, 0.4, 0.9)]
    assert levels == [0, 1, 2, 3]
    assert Cell(None, 0.3, False, "js").verdict == "no value"
    assert Cell(0.1, 0.0, True, "js").level == 3  # a zero threshold: any distance is far over


def test_no_runs_make_an_empty_table() -> None:
    table = heat_table([_run(1, None, "no_data")])
    assert table.runs == [] and table.rows == []
