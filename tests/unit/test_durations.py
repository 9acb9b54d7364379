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
