"""Memory sizes as users write them: ``4GiB``, ``600MiB``, ``512M``, ``1.5G``, ``1048576``.

Standard library only (and cloche's errors), so the CLI and the settings can read them without
importing the serving stack. Units are binary (KiB = 1024 bytes); ``K``/``M``/``G``/``T`` and
``KB``/``MB``/``GB``/``TB`` mean the same binary units, as memory is counted in pages, not in
decimal marketing units.
"""

from __future__ import annotations

import re

from cloche.errors import InvalidInput

SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?$", re.IGNORECASE)
POWERS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4}
# Far beyond any machine's memory: a typo of a few extra digits is an error, not "unlimited".
MAX_BYTES = 2**50  # 1 PiB
EXAMPLES = "4GiB, 600MiB, 512M or a number of bytes"


def parse_size(value: str | int) -> int:
    """The number of bytes ``value`` writes; InvalidInput naming the accepted forms if none."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        text = str(value).strip()
        match = SIZE.match(text) if len(text) <= 40 else None
        if match is None:
            raise InvalidInput(
                f"{value!r} is not a memory size",
                hint=f"write it as {EXAMPLES}",
            )
        amount, unit = match.groups()
        number = int(float(amount) * 1024 ** POWERS[unit.upper()])
    if number <= 0:
        raise InvalidInput(
            f"a memory size must be more than 0 bytes, got {value!r}",
            hint=f"write it as {EXAMPLES}; leave it unset for no limit",
        )
    if number > MAX_BYTES:
        raise InvalidInput(
            f"{value!r} is more than 1 PiB, surely not this machine's memory",
            hint=f"write it as {EXAMPLES}",
        )
    return number


def format_size(number: int | None) -> str:
    """``number`` bytes for people: ``600 MiB``, ``1.5 GiB``; ``-`` for unknown."""
    if number is None:
        return "-"
    size = float(number)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            text = f"{size:.0f}" if unit == "B" or size >= 100 else f"{size:.1f}".rstrip("0")
            return f"{text.rstrip('.')} {unit}"
        size /= 1024
    return f"{number} B"  # unreachable: the loop returns at TiB
