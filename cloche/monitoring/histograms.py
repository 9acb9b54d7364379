"""A feature's baseline and window side by side as bin shares, stored with each monitor run
so the console draws them without reading the payload log again."""

from __future__ import annotations

from typing import Any

import numpy as np

from cloche.monitoring.distances import BINS
from cloche.monitoring.feature_profiles import CategoricalProfile, FeatureProfile, NumericProfile

MAX_CATEGORIES = 30  # the rest of the categories share one "other" bin on each side
NUMERIC_NOTE = (
    "bins (-inf, e1], (e1, e2], ..., (e_last, +inf) over the interior edges, which sit at the "
    "baseline's deciles (the bins of the js and psi distances); shares of valid values, from "
    "the profiles' quantile sketches"
)
CATEGORICAL_NOTE = (
    "shares of valid values per category, the baseline's most frequent first; categories past "
    f"the first {MAX_CATEGORIES} share the bin 'other'"
)


def feature_histogram(baseline: FeatureProfile, window: FeatureProfile) -> dict[str, Any] | None:
    """Both sides' shares over the same bins (numeric) or categories; None when a side has no
    valid value or the two profiles are of different kinds."""
    if not baseline.valid or not window.valid:
        return None
    if isinstance(baseline, NumericProfile) and isinstance(window, NumericProfile):
        return _numeric(baseline, window)
    if isinstance(baseline, CategoricalProfile) and isinstance(window, CategoricalProfile):
        return _categorical(baseline, window)
    return None


def _numeric(baseline: NumericProfile, window: NumericProfile) -> dict[str, Any]:
    edges = np.unique(baseline.quantiles(np.arange(1, BINS) / BINS))
    return {
        "kind": "numeric",
        "edges": [float(e) for e in edges],
        "baseline": _masses(baseline.cdf(edges)),
        "window": _masses(window.cdf(edges)),
        "baseline_rows": int(baseline.valid),
        "window_rows": int(window.valid),
        "note": NUMERIC_NOTE,
    }


def _masses(cdf: np.ndarray) -> list[float]:
    return [float(m) for m in np.diff(np.concatenate(([0.0], cdf, [1.0])))]


def _categorical(baseline: CategoricalProfile, window: CategoricalProfile) -> dict[str, Any]:
    base, here = baseline.counts(), window.counts()
    categories = list(dict.fromkeys([*base, *here]))[:MAX_CATEGORIES]
    p = [base.get(c, 0) / baseline.valid for c in categories]
    q = [here.get(c, 0) / window.valid for c in categories]
    if len(categories) < len(set(base) | set(here)) or sum(p) < 1 or sum(q) < 1:
        categories.append("other")
        p.append(max(0.0, 1 - sum(p)))
        q.append(max(0.0, 1 - sum(q)))
    return {
        "kind": "categorical",
        "categories": categories,
        "baseline": p,
        "window": q,
        "baseline_rows": int(baseline.valid),
        "window_rows": int(window.valid),
        "note": CATEGORICAL_NOTE,
    }
