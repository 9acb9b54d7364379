"""The heat table of a monitor: per feature and check (skew, drift) a cell per run's window.

Pure: the runs as the monitoring service returns them in, rows and cells out. A cell carries
the monitor's own verdict (as text) and a heat level, a second cue for the eye: how close the
distance came to its threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cloche.monitoring.entities import MonitorRun

CHECKS = ("skew", "drift")


@dataclass(frozen=True)
class Cell:
    value: float | None
    threshold: float
    breached: bool
    metric: str

    @property
    def verdict(self) -> str:
        if self.value is None:
            return "no value"
        return "breached" if self.breached else "ok"

    @property
    def level(self) -> int:
        """0 far below the threshold, 1 past half of it, 2 over it, 3 over twice it."""
        if self.value is None:
            return 0
        ratio = self.value / self.threshold if self.threshold > 0 else float("inf")
        if self.breached:
            return 3 if ratio >= 2 else 2
        return 1 if ratio >= 0.5 else 0


@dataclass(frozen=True)
class Row:
    feature: str
    check: str
    cells: list[Cell | None]  # one per column; None: the run did not compute it

    @property
    def breached(self) -> bool:
        return any(c is not None and c.breached for c in self.cells)


@dataclass(frozen=True)
class HeatTable:
    runs: list[MonitorRun]  # the columns, oldest first
    rows: list[Row]


def heat_table(runs: Sequence[MonitorRun]) -> HeatTable:
    """``runs`` (newest first, as listed) that compared features, as columns oldest first."""
    columns = [r for r in reversed(runs) if r.results.get("features")]
    features = sorted({f for r in columns for f in r.results["features"]})
    rows = [
        Row(feature, check, [_cell(r.results["features"].get(feature), check) for r in columns])
        for feature in features
        for check in CHECKS
        if any(check in (r.results["features"].get(feature) or {}) for r in columns)
    ]
    return HeatTable(runs=columns, rows=rows)


def _cell(entry: dict[str, Any] | None, check: str) -> Cell | None:
    verdict = (entry or {}).get(check)
    if verdict is None:
        return None
    return Cell(
        value=verdict.get("value"),
        threshold=float(verdict["threshold"]),
        breached=bool(verdict.get("breached")),
        metric=str(verdict.get("metric", "")),
    )
