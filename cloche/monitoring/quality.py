"""Data quality of a window against its baseline, per feature, from their profiles.

Every rate is a share of the window's rows for that feature, in [0, 1]:

- ``missing_rate``: None or NaN.
- ``mismatch_rate``: values of the wrong type (text in a numeric feature, lists, +-inf).
- ``out_of_range_rate`` (numeric): below the baseline's min or above its max. Exact when the
  window's own min and max lie inside the baseline's range (it is then 0) or the window sketch
  still holds every value; otherwise read from the window's CDF at the baseline's min and max,
  to within the sketch's rank error.
- ``unseen_category_rate`` (categorical): values whose category the baseline never saw. Exact
  while both frequent-items sketches are exact (fewer than ~3000 categories each).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from cloche.errors import InvalidInput
from cloche.monitoring.feature_profiles import (
    CategoricalProfile,
    FeatureProfile,
    Kind,
    NumericProfile,
)
from cloche.monitoring.profiles import Profile


@dataclass(frozen=True)
class FeatureQuality:
    """One feature's quality in a window; the rates that do not apply to its kind are None.
    ``exact`` is False when a rate comes from a sketch's estimate (``note`` says which)."""

    kind: Kind
    rows: int
    missing_rate: float
    mismatch_rate: float
    out_of_range_rate: float | None = None
    unseen_category_rate: float | None = None
    exact: bool = True
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "rows": self.rows,
            "missing_rate": self.missing_rate,
            "mismatch_rate": self.mismatch_rate,
            "out_of_range_rate": self.out_of_range_rate,
            "unseen_category_rate": self.unseen_category_rate,
            "exact": self.exact,
        }
        if self.note:
            out["note"] = self.note
        return out


def quality(baseline: Profile, window: Profile) -> dict[str, FeatureQuality]:
    """Each window feature's quality; range and category checks need the baseline to have
    profiled the feature too (when it has not, they are None and ``note`` says so)."""
    return {
        name: feature_quality(baseline.features.get(name), feature, name)
        for name, feature in window.features.items()
    }


def feature_quality(
    baseline: FeatureProfile | None, window: FeatureProfile, name: str = "feature"
) -> FeatureQuality:
    rows = window.count
    common = FeatureQuality(
        kind=window.kind,
        rows=rows,
        missing_rate=_rate(window.nulls, rows),
        mismatch_rate=_rate(window.mismatches, rows),
    )
    if baseline is None:
        return replace(common, note=f"{name} is not in the baseline")
    if isinstance(baseline, NumericProfile) and isinstance(window, NumericProfile):
        rate, exact = _out_of_range(baseline, window)
        note = None if exact else "out_of_range_rate is read from the window's sketch"
        return replace(common, out_of_range_rate=rate, exact=exact, note=note)
    if isinstance(baseline, CategoricalProfile) and isinstance(window, CategoricalProfile):
        unseen, note = _unseen(baseline, window)
        return replace(common, unseen_category_rate=unseen, exact=note is None, note=note)
    raise InvalidInput(f"{name} is {baseline.kind} in the baseline but {window.kind} in the window")


def _rate(part: float, whole: int) -> float:
    return min(max(part / whole, 0.0), 1.0) if whole else 0.0


def _out_of_range(baseline: NumericProfile, window: NumericProfile) -> tuple[float, bool]:
    """The share of window rows outside [baseline min, baseline max], and whether it is exact."""
    if not baseline.valid or not window.valid:
        return 0.0, True  # nothing to compare: no row is out of a range that is not there
    low, high = baseline.min, baseline.max
    below = above = 0.0
    if window.min < low:
        below = float(window.cdf([low], inclusive=False)[0])  # P(X < min)
    if window.max > high:
        above = 1.0 - float(window.cdf([high])[0])  # P(X > max)
    outside = (below + above) * window.valid
    if window.rank_error == 0:  # the sketch holds every value: the CDF counts them
        return _rate(round(outside), window.count), True
    return _rate(outside, window.count), window.min >= low and window.max <= high


def _unseen(baseline: CategoricalProfile, window: CategoricalProfile) -> tuple[float, str | None]:
    """The share of window rows in categories the baseline lacks, and a note when inexact."""
    seen = baseline.counts()
    unseen = sum(count for category, count in window.counts().items() if category not in seen)
    notes = []
    if not baseline.exact:
        notes.append("the baseline saw too many categories to count each: an upper bound")
    if not window.exact:
        notes.append("the window saw too many categories to count each: an estimate")
    return _rate(unseen, window.count), "; ".join(notes) or None
