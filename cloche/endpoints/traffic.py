"""Traffic arithmetic: proportional rescaling and parsing of split specifications."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cloche.errors import InvalidInput


def rescale(weights: Mapping[int, int], total: int) -> dict[int, int]:
    """Scale integer weights to sum to ``total`` in proportion (largest remainder rounding).

    All-zero weights share ``total`` equally, so an undeploy never leaves live traffic at 0%.
    """
    if not weights:
        return {}
    current = sum(weights.values())
    keys = sorted(weights)
    if current == 0:
        exact = {k: total / len(keys) for k in keys}
    else:
        exact = {k: weights[k] * total / current for k in keys}
    floors = {k: int(v) for k, v in exact.items()}
    short = total - sum(floors.values())
    by_remainder = sorted(keys, key=lambda k: (-(exact[k] - floors[k]), k))
    for k in by_remainder[:short]:
        floors[k] += 1
    return floors


def parse_split(items: Sequence[str]) -> dict[str, int]:
    """``["churn:3=90", "4=10"]`` -> ``{"churn:3": 90, "4": 10}``; percentages 0-100."""
    split: dict[str, int] = {}
    for item in items:
        ref, sep, pct = item.rpartition("=")
        if not sep or not ref or not pct.strip().isdigit():
            raise InvalidInput(
                f"cannot read traffic {item!r}",
                hint="write MODEL:VERSION=PERCENT, e.g. churn:3=90 churn:4=10",
            )
        split[ref.strip()] = int(pct)
    return split


def check_split_total(split: Mapping[str, int]) -> None:
    bad = {ref: pct for ref, pct in split.items() if not 0 <= pct <= 100}
    if bad:
        raise InvalidInput(f"traffic percentages must be 0-100, got {bad}")
    total = sum(split.values())
    if total != 100:
        parts = " + ".join(f"{pct} ({ref})" for ref, pct in split.items())
        raise InvalidInput(
            f"traffic must sum to 100, but {parts} = {total}",
            hint="give every live deployment a share, the shares adding up to 100",
        )
