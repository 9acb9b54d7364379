"""Distances between a baseline and a window, per feature: from profiles (sketches) for
monitoring, and exact twins on raw arrays that define what the sketch values estimate.

Numeric metrics (``compare_numeric``, ``exact_numeric``):

- ``js``: Jensen-Shannon divergence, log base 2, in [0, 1] (Vertex AI's convention; default
  threshold 0.3), over ``BINS`` bins fixed by the baseline's quantiles. ``js_distance`` is its
  square root (what scipy's ``jensenshannon`` returns).
- ``psi``: population stability index, sum((q - p) * ln(q / p)) over the same bins, every
  share raised to at least ``PSI_EPSILON`` so that an empty bin costs a finite amount.
- ``ks``: Kolmogorov-Smirnov statistic, max over x of |F_baseline(x) - F_window(x)|.
- ``wasserstein``: W1 (earth mover's) distance divided by the baseline's standard deviation
  (ddof=0), like Evidently's "normed" Wasserstein: 0.1 means the mass moved a tenth of a std.

Categorical metrics (``compare_categorical``, ``exact_categorical``), on category shares over
the union of both sides' categories (one the baseline never saw has baseline share 0):

- ``linf``: max over categories of |share_baseline - share_window| (default threshold 0.3).
- ``js`` and ``psi``: as above, with the categories as the bins.

Quantile bins: interior edges at the baseline's quantiles i/BINS (i = 1..BINS-1) in numpy's
"inverted_cdf" definition (the smallest x with F(x) >= i/BINS; KLL's inclusive quantile),
equal edges merged (discrete data), outer bins open to -inf/+inf. A bin is (left, right].

Sketch accuracy, ``Distance.error_bound``: how far a value computed from profiles may be from
the exact twin on the same rows. Both rest on KLL's normalized rank error eps (DataSketches'
99th percentile of the worst CDF error over all ranks: ~0.0133 at k=200; 0 while a sketch
still holds every value, in which case the sketch value IS the exact value).

- ``ks``, guaranteed: eps_baseline + eps_window. Each sketched CDF is within its eps of the
  truth everywhere, and the sketch statistic is the exact max of the two sketched CDFs (taken
  at every value either sketch retains), so it moves by at most the sum.
- ``js``, ``psi``, empirical: each bin share is the difference of two CDF values, so it can be
  off by 2 eps; propagating that (the guaranteed bound) gives ~0.15 for JS near 0.3, ten times
  the errors seen. The bound reported is the largest change of each bin's term when its
  baseline share moves by up to ``SKETCH_ERROR_SCALE`` * eps_baseline and its window share by
  ``SKETCH_ERROR_SCALE`` * eps_window, summed over bins. With the scale at 0.5 it was at least
  2.4 times the measured error in 12 runs each of normal, lognormal, bimodal, uniform,
  Student-t(3), Poisson and 3-valued data shifted by 0 to 1.5 std, at 100k rows (largest
  errors seen: 0.03 for JS, 0.4 for a PSI of 1.3-1.7).
  It does not cover a window whose rows pile on one value that sits at a baseline bin edge:
  the sketch's edge may fall on the other side of it and move that whole share between bins.
- ``wasserstein``, empirical: the mean over ranks u of Q(u + s*eps) - Q(u - s*eps) for each
  sketch (s = ``SKETCH_ERROR_SCALE``), divided by the baseline std: the width of the band its
  quantile function is known to, so it grows with heavy tails, where W1 from a sketch is least
  reliable (at 100k rows the error reached 0.03 for normal data, 0.07 for lognormal and
  0.09 for Student-t(3); the bound was at least 3.5 times the error).
- categorical: 0 when both frequent-items sketches are exact (fewer than ~3000 categories);
  otherwise each share is off by at most count_error / rows (guaranteed), which bounds
  ``linf`` by the sum of both sides' share errors (guaranteed) and JS/PSI through the per-bin
  propagation above (empirical).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

import numpy as np

from cloche.errors import InvalidInput
from cloche.monitoring.feature_profiles import (
    CategoricalProfile,
    FeatureProfile,
    NumericProfile,
    category_label,
)

Metric = Literal["js", "linf", "psi", "ks", "wasserstein"]
Source = Literal["sketch", "exact"]
BoundKind = Literal["guaranteed", "empirical"]
NUMERIC_METRICS: tuple[Metric, ...] = ("js", "psi", "ks", "wasserstein")
CATEGORICAL_METRICS: tuple[Metric, ...] = ("linf", "js", "psi")

BINS = 10
DEFAULT_THRESHOLD = 0.3  # for the default metrics, js (numeric) and linf (categorical)
JS_LOG_BASE = 2
# Floor for a bin's share in PSI: an empty 10% bin then adds (0.1 - 1e-4) * ln(0.1 / 1e-4),
# about 0.69, instead of infinity. The shares are not renormalised afterwards.
PSI_EPSILON = 1e-4
QUANTILE_METHOD: Final = "inverted_cdf"
# Ranks at which sketched quantile functions are compared for Wasserstein (midpoint rule).
WASSERSTEIN_GRID = 10_000
# The share of the rank error eps the empirical bounds assume (see the module docstring).
SKETCH_ERROR_SCALE = 0.5

_DEFINITIONS = {
    "js": "Jensen-Shannon divergence (log base 2, in [0, 1]) over the bins",
    "psi": "population stability index sum((q - p) * ln(q / p)), shares floored at epsilon",
    "ks": "Kolmogorov-Smirnov statistic max |F_baseline - F_window|",
    "wasserstein": "Wasserstein-1 distance divided by the baseline std (ddof=0)",
    "linf": "max over categories of |share_baseline - share_window|",
}


@dataclass(frozen=True)
class Distance:
    """One distance between a baseline and a window, with what is needed to read it.

    ``value`` is NaN when either side has no valid values (``note`` says which).
    ``error_bound`` is how far a sketch value may be from the exact one on the same rows (0 for
    exact values and for sketches that still hold every value); ``bound`` says whether that is
    "guaranteed" (given the sketch's 99%-confidence rank error) or "empirical"."""

    value: float
    metric: Metric
    source: Source
    error_bound: float = 0.0
    bound: BoundKind = "guaranteed"
    log_base: float | None = None  # js: 2; psi: e
    divergence: bool | None = None  # js: value is the divergence, js_distance its sqrt
    js_distance: float | None = None
    bin_edges: tuple[float, ...] | None = None  # numeric js/psi: the interior edges
    bins: int | None = None  # js/psi: how many bins (categories, and "other" if evicted)
    epsilon: float | None = None  # psi: the share floor
    normalized_by: float | None = None  # wasserstein: the baseline std it was divided by
    note: str | None = None

    @property
    def definition(self) -> str:
        return _DEFINITIONS[self.metric]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: NaN becomes None; fields that do not apply are left out."""
        out: dict[str, Any] = {
            "value": _jsonable(self.value),
            "metric": self.metric,
            "definition": self.definition,
            "source": self.source,
            "error_bound": _jsonable(self.error_bound),
            "bound": self.bound,
        }
        optional: dict[str, Any] = {
            "log_base": self.log_base,
            "divergence": self.divergence,
            "js_distance": self.js_distance,
            "bin_edges": [_jsonable(e) for e in self.bin_edges] if self.bin_edges else None,
            "bins": self.bins,
            "epsilon": self.epsilon,
            "normalized_by": self.normalized_by,
            "note": self.note,
        }
        out.update({key: value for key, value in optional.items() if value is not None})
        return out


def _jsonable(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


# --- the definitions on bin shares ------------------------------------------------------------


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence (log base 2) of two distributions over the same bins."""
    return float(np.clip(_js_terms(p, q).sum(), 0.0, 1.0))


def psi(p: np.ndarray, q: np.ndarray) -> float:
    """Population stability index, every share floored at ``PSI_EPSILON``."""
    return float(_psi_terms(p, q).sum())


def _js_terms(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Each bin's part of the JS divergence (0 * log 0 taken as 0)."""
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        from_p = np.where(p > 0, p * np.log2(p / m), 0.0)
        from_q = np.where(q > 0, q * np.log2(q / m), 0.0)
    return 0.5 * (from_p + from_q)


def _psi_terms(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    p, q = np.maximum(p, PSI_EPSILON), np.maximum(q, PSI_EPSILON)
    return (q - p) * np.log(q / p)


_TERMS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "js": _js_terms,
    "psi": _psi_terms,
}


def _binned(metric: Metric, p: np.ndarray, q: np.ndarray, source: Source, **extra: Any) -> Distance:
    if metric == "js":
        value = js_divergence(p, q)
        return Distance(
            value,
            "js",
            source,
            log_base=JS_LOG_BASE,
            divergence=True,
            js_distance=math.sqrt(value),
            bins=len(p),
            **extra,
        )
    return Distance(
        psi(p, q), "psi", source, log_base=math.e, epsilon=PSI_EPSILON, bins=len(p), **extra
    )


def _binned_bound(metric: Metric, p: np.ndarray, q: np.ndarray, dp: float, dq: float) -> float:
    """How far JS or PSI can move when each baseline share may be off by ``dp`` and each window
    share by ``dq``: per bin, the largest change of its term over a 5x5 grid spanning the box of
    possible shares (corners included, where a convex term is largest), summed over bins."""
    steps = np.linspace(-1.0, 1.0, 5)
    p_box = np.clip(p[:, None, None] + dp * steps[None, :, None], 0.0, 1.0)
    q_box = np.clip(q[:, None, None] + dq * steps[None, None, :], 0.0, 1.0)
    p_box, q_box = np.broadcast_arrays(p_box, q_box)
    terms = _TERMS[metric]
    change = np.abs(terms(p_box, q_box) - terms(p, q)[:, None, None])
    return float(change.max(axis=(1, 2)).sum())


def _masses(cdf_at_edges: np.ndarray) -> np.ndarray:
    """Bin shares from the CDF at the interior edges (bins (-inf, e1], (e1, e2], ...)."""
    return np.diff(np.concatenate(([0.0], cdf_at_edges, [1.0])))


def _undefined(metric: Metric, source: Source, baseline_empty: bool) -> Distance:
    side = "baseline" if baseline_empty else "window"
    return Distance(math.nan, metric, source, note=f"the {side} has no valid values")


def _with_bound(found: Distance, bound: float, kind: BoundKind) -> Distance:
    return replace(found, error_bound=bound, bound=kind if bound > 0 else "guaranteed")


# --- from profiles ----------------------------------------------------------------------------


def compare_numeric(
    baseline: FeatureProfile, window: FeatureProfile, metric: str = "js", *, bins: int = BINS
) -> Distance:
    """The ``metric`` distance between two numeric feature profiles (see the module doc)."""
    metric_ = _metric(metric, NUMERIC_METRICS, "numeric")
    if not isinstance(baseline, NumericProfile) or not isinstance(window, NumericProfile):
        raise InvalidInput("compare_numeric needs two numeric feature profiles")
    if not baseline.valid or not window.valid:
        return _undefined(metric_, "sketch", not baseline.valid)
    if metric_ == "ks":
        return _sketch_ks(baseline, window)
    if metric_ == "wasserstein":
        return _sketch_wasserstein(baseline, window)
    edges = np.unique(baseline.quantiles(_edge_ranks(bins)))
    p, q = _masses(baseline.cdf(edges)), _masses(window.cdf(edges))
    found = _binned(metric_, p, q, "sketch", bin_edges=tuple(map(float, edges)))
    dp = SKETCH_ERROR_SCALE * baseline.rank_error
    dq = SKETCH_ERROR_SCALE * window.rank_error
    return _with_bound(found, _binned_bound(metric_, p, q, dp, dq), "empirical")


def _sketch_ks(baseline: NumericProfile, window: NumericProfile) -> Distance:
    # Both sketched CDFs only step at retained values: the max over them is the exact max.
    grid = np.union1d(baseline.retained(), window.retained())
    value = float(np.max(np.abs(baseline.cdf(grid) - window.cdf(grid))))
    found = Distance(value, "ks", "sketch")
    return _with_bound(found, baseline.rank_error + window.rank_error, "guaranteed")


def _sketch_wasserstein(baseline: NumericProfile, window: NumericProfile) -> Distance:
    if not baseline.rank_error and not window.rank_error:  # both sketches hold every value
        raw = _w1(baseline.retained_values(), window.retained_values())
        return _normed_wasserstein(raw, baseline.std, "sketch")
    # W1 = integral over ranks u of |Q_b(u) - Q_w(u)|, by the midpoint rule.
    ranks = (np.arange(WASSERSTEIN_GRID) + 0.5) / WASSERSTEIN_GRID
    gaps = np.abs(_quantile_function(baseline, ranks) - _quantile_function(window, ranks))
    found = _normed_wasserstein(float(gaps.mean()), baseline.std, "sketch")
    width = sum(_quantile_band(p, ranks) for p in (baseline, window))
    return _with_bound(found, width / (found.normalized_by or 1.0), "empirical")


def _quantile_function(profile: NumericProfile, ranks: np.ndarray) -> np.ndarray:
    """The sketch's quantile function at ``ranks``. In estimation mode it is interpolated
    between the items' mid-ranks: an item stands for the 2**h rows around it, and a long tail's
    outlier kept with weight 512 would otherwise put all of them at its value and inflate W1
    several times over. The exact min and max pin ranks 0 and 1."""
    if not profile.rank_error:
        return np.quantile(profile.retained_values(), ranks, method=QUANTILE_METHOD)
    items = sorted(profile.sketch)
    values = np.array([item for item, _ in items], dtype=np.float64)
    weights = np.array([weight for _, weight in items], dtype=np.float64)
    mid = (np.cumsum(weights) - weights / 2) / weights.sum()
    knots = np.concatenate(([0.0], mid, [1.0]))
    return np.interp(ranks, knots, np.concatenate(([profile.min], values, [profile.max])))


def _quantile_band(profile: NumericProfile, ranks: np.ndarray) -> float:
    """Mean width of the band the sketch's quantile function is known to: Q(u + s*eps) -
    Q(u - s*eps), s = ``SKETCH_ERROR_SCALE``."""
    shift = SKETCH_ERROR_SCALE * profile.rank_error
    if not shift:
        return 0.0
    upper = _quantile_function(profile, np.minimum(ranks + shift, 1.0))
    lower = _quantile_function(profile, np.maximum(ranks - shift, 0.0))
    return float(np.mean(upper - lower))


def _normed_wasserstein(raw: float, std: float, source: Source) -> Distance:
    if std > 0:
        return Distance(raw / std, "wasserstein", source, normalized_by=std)
    note = "the baseline is constant (std 0): the value is the raw W1 distance"
    return Distance(raw, "wasserstein", source, normalized_by=1.0, note=note)


def compare_categorical(
    baseline: FeatureProfile, window: FeatureProfile, metric: str = "linf"
) -> Distance:
    """The ``metric`` distance between two categorical feature profiles (see the module doc):
    exact unless a side saw more categories than its sketch holds (~3000)."""
    metric_ = _metric(metric, CATEGORICAL_METRICS, "categorical")
    if not isinstance(baseline, CategoricalProfile) or not isinstance(window, CategoricalProfile):
        raise InvalidInput("compare_categorical needs two categorical feature profiles")
    if not baseline.valid or not window.valid:
        return _undefined(metric_, "sketch", not baseline.valid)
    p, q = _shares(baseline.counts(), window.counts(), baseline.valid, window.valid)
    dp, dq = baseline.count_error / baseline.valid, window.count_error / window.valid
    if metric_ == "linf":
        found = Distance(float(np.max(np.abs(p - q))), "linf", "sketch")
        return _with_bound(found, dp + dq, "guaranteed")
    if dp or dq:
        # The rows of categories a sketch evicted go to one "other" bin on each side.
        p, q = np.append(p, max(0.0, 1 - p.sum())), np.append(q, max(0.0, 1 - q.sum()))
    found = _binned(metric_, p, q, "sketch")
    return _with_bound(found, _binned_bound(metric_, p, q, dp, dq), "empirical")


def _shares(
    base: dict[str, int], window: dict[str, int], base_rows: int, window_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Both sides' shares over the union of their categories."""
    categories = list(dict.fromkeys([*base, *window]))
    p = np.array([base.get(c, 0) for c in categories], dtype=np.float64) / base_rows
    q = np.array([window.get(c, 0) for c in categories], dtype=np.float64) / window_rows
    return p, q


# --- exact twins on raw arrays ----------------------------------------------------------------


def exact_numeric(
    baseline_values: np.ndarray | Sequence[float],
    window_values: np.ndarray | Sequence[float],
    metric: str = "js",
    *,
    bins: int = BINS,
) -> Distance:
    """``compare_numeric``'s definition on raw values (NaN and +-inf dropped, as profiles do):
    the reference the sketch values are measured against."""
    metric_ = _metric(metric, NUMERIC_METRICS, "numeric")
    base, win = _finite_sorted(baseline_values), _finite_sorted(window_values)
    if not len(base) or not len(win):
        return _undefined(metric_, "exact", not len(base))
    if metric_ == "ks":
        grid = np.concatenate((base, win))
        value = float(np.max(np.abs(_ecdf(base, grid) - _ecdf(win, grid))))
        return Distance(value, "ks", "exact")
    if metric_ == "wasserstein":
        return _normed_wasserstein(_w1(base, win), float(np.std(base)), "exact")
    edges = np.unique(np.quantile(base, _edge_ranks(bins), method=QUANTILE_METHOD))
    p, q = _masses(_ecdf(base, edges)), _masses(_ecdf(win, edges))
    return _binned(metric_, p, q, "exact", bin_edges=tuple(map(float, edges)))


def exact_categorical(
    baseline_values: Sequence[Any] | np.ndarray,
    window_values: Sequence[Any] | np.ndarray,
    metric: str = "linf",
) -> Distance:
    """``compare_categorical``'s definition on raw values (None and NaN dropped; labels made
    as profiles make them, so 1, 1.0 and "1" are one category)."""
    metric_ = _metric(metric, CATEGORICAL_METRICS, "categorical")
    base, win = _label_counts(baseline_values), _label_counts(window_values)
    base_rows, window_rows = sum(base.values()), sum(win.values())
    if not base_rows or not window_rows:
        return _undefined(metric_, "exact", not base_rows)
    p, q = _shares(base, win, base_rows, window_rows)
    if metric_ == "linf":
        return Distance(float(np.max(np.abs(p - q))), "linf", "exact")
    return _binned(metric_, p, q, "exact")


def _label_counts(values: Sequence[Any] | np.ndarray) -> dict[str, int]:
    return dict(Counter(category_label(v) for v in values if not _missing(v)))


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _finite_sorted(values: np.ndarray | Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return np.sort(array[np.isfinite(array)])


def _ecdf(sorted_values: np.ndarray, points: np.ndarray) -> np.ndarray:
    """P(X <= x) at each point, for sorted samples."""
    return np.searchsorted(sorted_values, points, side="right") / len(sorted_values)


def _w1(base: np.ndarray, window: np.ndarray) -> float:
    """Exact W1 of two sorted samples: the integral of |F_b - F_w| between pooled values."""
    grid = np.sort(np.concatenate((base, window)))
    gaps = np.diff(grid)
    return float(np.sum(np.abs(_ecdf(base, grid[:-1]) - _ecdf(window, grid[:-1])) * gaps))


def _edge_ranks(bins: int) -> np.ndarray:
    if bins < 2:
        raise InvalidInput(f"bins must be at least 2, not {bins}")
    return np.arange(1, bins) / bins


def _metric(metric: str, allowed: tuple[Metric, ...], kind: str) -> Metric:
    for known in allowed:
        if metric == known:
            return known
    raise InvalidInput(f"unknown {kind} metric {metric!r}", hint=f"use one of {', '.join(allowed)}")
