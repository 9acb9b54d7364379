"""Table-dump values survive JSON unchanged, and no stored value is taken for a tag."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from cloche.errors import BackupInvalid
from cloche.store.dump import decode, encode


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        7,
        2.5,
        "text with \t and \n",
        datetime(2026, 12, 7, 3, 4, 5, 123456, tzinfo=UTC),
        date(2026, 12, 7),
        b"\x00\xffbytes",
        Decimal("1.10"),
        {"$dt": "a JSON column holding what looks like a tag"},
        [1, {"nested": [None]}],
    ],
)
def test_values_round_trip_through_json(value: Any) -> None:
    assert decode(json.loads(json.dumps(encode(value)))) == value


def test_datetimes_come_back_in_utc_whatever_zone_they_left_in() -> None:
    paris = datetime(2026, 12, 7, 4, 0, tzinfo=timezone(timedelta(hours=1)))
    naive_utc = datetime(2026, 12, 7, 3, 0)  # how SQLite hands back a stored UTC time
    assert decode(encode(paris)) == datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
    assert decode(encode(naive_utc)) == datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


def test_an_unknown_tag_is_a_clear_error() -> None:
    with pytest.raises(BackupInvalid, match="unknown value tag"):
        decode({"$oops": 1})
