"""The run page's timeline: each attempt's bar placed on the run's span, durations as text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cloche.console.run_view import artifacts, duration, timeline
from cloche.pipelines.entities import PipelineRun, StepRecord

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _run(*steps: StepRecord) -> PipelineRun:
    return PipelineRun(
        id="pr_1", pipeline="p", source_hash="h", params={}, state="running", created_at=T0,
        steps=list(steps),
    )  # fmt: skip


def test_bars_sit_on_the_runs_span_and_an_open_attempt_runs_until_now() -> None:
    done = StepRecord(step="a", state="succeeded", started_at=T0, ended_at=T0 + timedelta(10))
    open_ = StepRecord(step="b", iteration=1, state="running", started_at=T0 + timedelta(10))
    waiting = StepRecord(step="c", state="pending")
    rows = timeline(_run(open_, waiting, done), now=T0 + timedelta(20))
    assert [r.key for r in rows] == ["a", "b[1]", "c"]
    assert [r.seconds for r in rows] == [864_000.0, 864_000.0, None]
    assert 'x="0.0"' in rows[0].bar and 'x="120.0" y="1" width="120.0"' in rows[1].bar
    assert 'aria-label="b[1] attempt 1: running"' in rows[1].bar and rows[2].bar == ""


def test_durations_read_as_seconds_minutes_or_hours() -> None:
    assert [duration(s) for s in (None, 2.25, 125, 7260)] == [
        "not started", "2.2 s", "2 min 5 s", "2 h 1 min"
    ]  # fmt: skip


def test_artifacts_are_the_outputs_with_a_type_and_a_uri() -> None:
    record = StepRecord(
        step="a", state="succeeded",
        outputs={"data": {"type": "Dataset", "uri": "/x"}, "output": 3, "d": {"uri": "y"}},
    )  # fmt: skip
    assert artifacts(record) == [("data", {"type": "Dataset", "uri": "/x"})]
