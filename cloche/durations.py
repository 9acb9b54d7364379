"""Durations as users write them: ``30s``, ``30m``, ``1h``, ``7d``, ``2w``.

Standard library only, so the CLI can read them without importing the log or the store.
"""

from __future__ import annotations

import re
from datetime import timedelta

DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value: str) -> timedelta | None:
    """The duration ``value`` writes, or None if it is not one."""
    match = DURATION.match(value.strip())
    if match is None:
        return None
    amount, unit = match.groups()
    return timedelta(**{UNITS[unit]: int(amount)})
