"""Feature profiles: a mergeable summary of one feature's values, built from Apache DataSketches.

A numeric feature keeps a KLL quantile sketch (its CDF and quantiles to within a known rank
error) plus exact count, nulls, type mismatches, min, max, mean and std. A categorical feature
keeps a frequent-items sketch whose counts are exact up to ``FREQUENT_LG_MAX_MAP_SIZE``
capacity (about 3000 distinct values) and heavy-hitter estimates beyond it.

Each merges with another of its kind into a new profile (the inputs are left as they are), so
the per-feature summaries of parts of a dataset add up to that of the whole (up to sketch
error). ``profiles.py`` holds a dataset's set of them (``Profile``): building them from a
table's columns, merging and encoding.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
from datasketches import frequent_items_error_type, frequent_strings_sketch, kll_doubles_sketch

Kind = Literal["numeric", "categorical"]
KINDS: tuple[Kind, ...] = ("numeric", "categorical")

# KLL accuracy/size trade-off: k=200 gives a normalized rank error of about 1.33% (99th
# percentile of the worst error over all ranks) in a few kilobytes, whatever the row count.
KLL_K = 200
# 2**12 map slots hold 0.75 * 4096 = 3072 distinct values with exact counts; beyond that the
# sketch keeps heavy hitters with an error of at most 0.085% of the rows.
FREQUENT_LG_MAX_MAP_SIZE = 12
# The ranks reported as p1..p99 in summaries.
SUMMARY_RANKS = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
TOP_CATEGORIES = 20

_CATEGORICAL_DTYPES = frozenset({"string", "category", "bool", "datetime", "bytes"})


def kind_of_dtype(dtype: str) -> Kind:
    """The profile kind for a signature dtype: numbers are numeric; strings, categories and
    booleans (and anything else) are categorical."""
    return "categorical" if dtype in _CATEGORICAL_DTYPES else "numeric"


def kind_of_arrow(arrow_type: pa.DataType) -> Kind:
    """The profile kind for an Arrow column type: integers, floats and decimals are numeric."""
    numeric = (
        pa.types.is_integer(arrow_type)
        or pa.types.is_floating(arrow_type)
        or pa.types.is_decimal(arrow_type)
    )
    return "numeric" if numeric else "categorical"


def category_label(value: Any) -> str:
    """The category a value counts under: ``str(value)``, except that an integral float is
    written as an integer, so 1, 1.0 and "1" from a baseline file and a JSON request agree."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return str(value)


@dataclass(eq=False)
class NumericProfile:
    """One numeric feature. ``count`` is every row; ``nulls`` are None or NaN; ``mismatches``
    are values that are not finite numbers (text that does not parse, +-inf, other types).
    The rest (``valid``) went into the sketch, the sum and ``m2``."""

    kind: ClassVar[Kind] = "numeric"

    sketch: kll_doubles_sketch = field(default_factory=lambda: kll_doubles_sketch(KLL_K))
    count: int = 0
    nulls: int = 0
    mismatches: int = 0
    sum: float = 0.0
    # Sum of squared deviations from the mean, merged with Chan et al.'s formula: unlike a
    # raw sum of squares it keeps the std accurate when the mean is large against the spread.
    m2: float = 0.0

    @property
    def valid(self) -> int:
        return int(self.sketch.n)

    @property
    def min(self) -> float:
        return float(self.sketch.get_min_value()) if self.valid else math.nan

    @property
    def max(self) -> float:
        return float(self.sketch.get_max_value()) if self.valid else math.nan

    @property
    def mean(self) -> float:
        return self.sum / self.valid if self.valid else math.nan

    @property
    def std(self) -> float:
        """Population standard deviation (ddof=0) of the valid values."""
        return math.sqrt(max(self.m2, 0.0) / self.valid) if self.valid else math.nan

    @property
    def rank_error(self) -> float:
        """KLL's normalized rank error: every CDF value and quantile rank is within this of the
        truth (99% confidence, DataSketches' constant); 0 while the sketch still holds every
        value."""
        if not self.sketch.is_estimation_mode():
            return 0.0
        return float(self.sketch.normalized_rank_error(False))

    def cdf(self, points: Sequence[float] | np.ndarray, *, inclusive: bool = True) -> np.ndarray:
        """P(X <= x) (P(X < x) when not ``inclusive``) at each point (ascending, unique), to
        within ``rank_error``."""
        if not self.valid:
            return np.full(len(points), math.nan)
        if len(points) == 0:
            return np.zeros(0)
        found = self.sketch.get_cdf(list(map(float, points)), inclusive=inclusive)
        return np.asarray(found)[:-1]

    def quantiles(self, ranks: Sequence[float] | np.ndarray) -> np.ndarray:
        """The smallest x with P(X <= x) >= rank, per rank (numpy's "inverted_cdf" quantile)."""
        if not self.valid:
            return np.full(len(ranks), math.nan)
        return np.asarray(self.sketch.get_quantiles(list(map(float, ranks)), inclusive=True))

    def retained(self) -> np.ndarray:
        """The distinct values the sketch keeps, sorted: its CDF only steps at these."""
        return np.unique(np.fromiter((item for item, _ in self.sketch), dtype=np.float64))

    def retained_values(self) -> np.ndarray:
        """The kept values, sorted, each repeated by its weight: every value, in order, while
        the sketch is not in estimation mode (at most ``KLL_K`` values)."""
        items = sorted(self.sketch)
        values = np.array([item for item, _ in items], dtype=np.float64)
        return np.repeat(values, [int(weight) for _, weight in items])

    def merge(self, other: NumericProfile) -> NumericProfile:
        sketch = copy.copy(self.sketch)
        sketch.merge(other.sketch)
        n_a, n_b = self.valid, other.valid
        m2 = self.m2 + other.m2
        if n_a and n_b:
            delta = other.mean - self.mean
            m2 += delta * delta * n_a * n_b / (n_a + n_b)
        return NumericProfile(
            sketch=sketch,
            count=self.count + other.count,
            nulls=self.nulls + other.nulls,
            mismatches=self.mismatches + other.mismatches,
            sum=self.sum + other.sum,
            m2=m2,
        )

    def summary(self) -> dict[str, Any]:
        quantiles = self.quantiles(SUMMARY_RANKS)
        return {
            "kind": self.kind,
            "count": self.count,
            "nulls": self.nulls,
            "mismatches": self.mismatches,
            "min": _finite(self.min),
            "max": _finite(self.max),
            "mean": _finite(self.mean),
            "std": _finite(self.std),
            "quantiles": {
                f"p{round(r * 100)}": _finite(float(q))
                for r, q in zip(SUMMARY_RANKS, quantiles, strict=True)
            },
            "rank_error": self.rank_error,
        }


@dataclass(eq=False)
class CategoricalProfile:
    """One categorical feature. ``count`` is every row; ``nulls`` are None (or NaN);
    ``mismatches`` are values that cannot be a category (lists, objects). The rest are counted
    per category label (see ``category_label``) in a frequent-items sketch."""

    kind: ClassVar[Kind] = "categorical"

    sketch: frequent_strings_sketch = field(
        default_factory=lambda: frequent_strings_sketch(FREQUENT_LG_MAX_MAP_SIZE)
    )
    count: int = 0
    nulls: int = 0
    mismatches: int = 0

    @property
    def valid(self) -> int:
        return int(self.sketch.total_weight)

    @cached_property
    def _items(self) -> list[tuple[str, int, int, int]]:
        # Profiles are not changed once built (merge makes a new one), so this is cached.
        if self.sketch.is_empty():
            return []
        items = self.sketch.get_frequent_items(frequent_items_error_type.NO_FALSE_NEGATIVES, 0)
        return sorted(items, key=lambda item: (-item[2], item[0]))

    @property
    def exact(self) -> bool:
        """True while the sketch has never had to evict a category: every count is exact."""
        return self.count_error == 0

    @property
    def count_error(self) -> int:
        """How far any category's count may be below its true count (0 when exact); a category
        missing from ``counts()`` occurred at most this many times."""
        items = self._items
        return int(items[0][3] - items[0][2]) if items else 0

    def counts(self) -> dict[str, int]:
        """Category -> count, most frequent first (lower bounds when not ``exact``)."""
        return {item: int(lower) for item, _, lower, _ in self._items if lower > 0}

    def merge(self, other: CategoricalProfile) -> CategoricalProfile:
        sketch = copy.copy(self.sketch)
        sketch.merge(other.sketch)
        return CategoricalProfile(
            sketch=sketch,
            count=self.count + other.count,
            nulls=self.nulls + other.nulls,
            mismatches=self.mismatches + other.mismatches,
        )

    def summary(self) -> dict[str, Any]:
        counts = self.counts()
        valid = self.valid
        top = list(counts.items())[:TOP_CATEGORIES]
        return {
            "kind": self.kind,
            "count": self.count,
            "nulls": self.nulls,
            "mismatches": self.mismatches,
            "exact": self.exact,
            "distinct": len(counts) if self.exact else None,
            "top": [{"value": v, "count": c, "share": c / valid} for v, c in top],
        }


FeatureProfile = NumericProfile | CategoricalProfile


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
