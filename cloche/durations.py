"""Durations as users write them: ``30s``, ``30m``, ``1h``, ``7d``, ``2w``.

Standard library only (and cloche's errors), so the CLI can read them without importing the
log or the store.
"""

from __future__ import annotations

import re
from datetime import timedelta

from cloche.errors import InvalidInput

DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# Far beyond any window, schedule or retention, and far inside what a date can hold: a time
# this long before now is still after year 1, so `--since` never overflows a datetime.
MAX_DURATION = timedelta(days=36_500)
MAX_DURATION_S = int(MAX_DURATION.total_seconds())
LARGEST = "36500d (100 years)"


def parse_duration(value: str) -> timedelta | None:
    """The duration ``value`` writes, or None if it is not one; InvalidInput if over 100 years."""
    match = DURATION.match(value.strip())
    if match is None:
        return None
    amount, unit = match.groups()
    # Digits counted first: int() of thousands of digits is slow, then refused by Python.
    span = _span(int(amount), unit) if len(amount) <= 12 else timedelta.max
    if span > MAX_DURATION:
        raise too_long(value.strip())
    return span


def _span(amount: int, unit: str) -> timedelta:
    try:
        return timedelta(**{UNITS[unit]: amount})
    except OverflowError:  # over timedelta's own ceiling (a billion days)
        return timedelta.max


def too_long(what: str) -> InvalidInput:
    what = what if len(what) <= 24 else what[:20] + "..."
    return InvalidInput(
        f"{what} is longer than the largest accepted duration, {LARGEST}",
        hint=f"use at most {LARGEST}, e.g. 30d or 52w",
    )
