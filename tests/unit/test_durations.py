"""Durations as users write them, read the same by the CLI and the log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cloche.durations import parse_duration
from cloche.errors import InvalidInput
from cloche.logs.service import parse_since


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30s", timedelta(seconds=30)), (" 5 m ", timedelta(minutes=5)), ("1h", timedelta(hours=1)),
     ("7d", timedelta(days=7)), ("2w", timedelta(weeks=2))],
)  # fmt: skip
def test_each_unit_reads_as_its_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "h", "1.5h", "1y", "-1h", "1 hour", "2026-01-01"])
def test_anything_else_is_not_a_duration(text: str) -> None:
    assert parse_duration(text) is None


def test_since_takes_a_duration_back_from_now_or_an_iso_time() -> None:
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    assert parse_since("2h", now=now) == datetime(2026, 11, 25, 10, tzinfo=UTC)
    assert parse_since("2026-11-24T08:00:00") == datetime(2026, 11, 24, 8, tzinfo=UTC)
    with pytest.raises(InvalidInput, match="cannot read the time"):
        parse_since("yesterday")


@pytest.mark.parametrize("text", ["36501d", "999999999d", "5215w", "9" * 5000 + "s"])
def test_durations_too_large_for_a_date_are_refused_naming_the_largest(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"largest accepted duration, 36500d") as info:
        parse_duration(text)
    assert len(info.value.message) < 200  # a 5000-digit value is not echoed back
    with pytest.raises(InvalidInput, match="36500d"):
        parse_since(text)


def test_the_largest_duration_still_makes_a_date() -> None:
    assert parse_duration("36500d") == timedelta(days=36_500)
    assert parse_since("36500d") is not None


def test_monitor_windows_and_schedules_over_100_years_are_refused() -> None:
    from pydantic import ValidationError

    from cloche.monitoring.entities import MonitorConfig

    MonitorConfig(every_s=36_500 * 86_400, window_s=3600)
    for field in ("every_s", "window_s", "cooldown_s"):
        with pytest.raises(ValidationError, match="less than or equal to 3153600000"):
            MonitorConfig(**{field: 10**18})
