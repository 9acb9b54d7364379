"""Profiles: a mergeable per-feature summary of a dataset, built from Apache DataSketches.

A numeric feature keeps a KLL quantile sketch (its CDF and quantiles to within a known rank
error) plus exact count, nulls, type mismatches, min, max, mean and std. A categorical feature
keeps a frequent-items sketch whose counts are exact up to ``FREQUENT_LG_MAX_MAP_SIZE``
capacity (about 3000 distinct values) and heavy-hitter estimates beyond it.

Profiles merge: profiling per worker or per time window and merging equals profiling the union
(up to sketch error), so a day is 24 merged hourly profiles and a baseline is profiled once.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasketches import frequent_items_error_type, frequent_strings_sketch, kll_doubles_sketch

from cloche.errors import InvalidDataset, InvalidInput

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
# A number as JSON or CSV writes it (Arrow's cast rejects anything else and the whole array
# with it, so the parseable values are picked out first).
_NUMBER = r"^[+-]?((\d+\.?\d*|\.\d+)(e[+-]?\d+)?|nan|inf|infinity)$"  # case-insensitive
_MAGIC = b"CLPROF"
_FORMAT_VERSION = 1


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


def _empty(kind: Kind) -> FeatureProfile:
    return NumericProfile() if kind == "numeric" else CategoricalProfile()


@dataclass(eq=False)
class Profile:
    """Per-feature profiles of ``rows`` rows of a dataset (or a window of traffic)."""

    rows: int
    features: dict[str, FeatureProfile]

    @property
    def kinds(self) -> dict[str, Kind]:
        return {name: f.kind for name, f in self.features.items()}

    @classmethod
    def from_table(cls, table: pa.Table, kinds: Mapping[str, str] | None = None) -> Profile:
        """Profile the columns named in ``kinds`` (feature -> "numeric" | "categorical"), or
        every column with its kind from its Arrow type (``kind_of_arrow``) when None."""
        if kinds is None:
            kinds = {
                name: kind_of_arrow(table.schema.field(name).type) for name in table.schema.names
            }
        missing = [name for name in kinds if name not in table.column_names]
        if missing:
            raise InvalidDataset(
                f"the table lacks the profiled feature(s) {', '.join(map(repr, missing))}",
                columns=table.column_names,
            )
        features = {name: _profile_column(table[name], _kind(name, k)) for name, k in kinds.items()}
        return cls(rows=table.num_rows, features=features)

    @classmethod
    def from_rows(
        cls, rows: Sequence[Mapping[str, Any]], kinds: Mapping[str, str] | None = None
    ) -> Profile:
        """Profile JSON-like rows (objects by feature name); a missing key counts as null, a
        list or object value as a mismatch. Kinds are inferred from the values when None."""
        names = (
            list(kinds) if kinds is not None else list(dict.fromkeys(k for r in rows for k in r))
        )
        features = {}
        for name in names:
            array, nested = _column_from_values([row.get(name) for row in rows])
            kind = _kind(name, kinds[name]) if kinds is not None else kind_of_arrow(array.type)
            profile = _profile_column(pa.chunked_array([array]), kind)
            profile.nulls -= nested  # they were nulled out to build the column
            profile.mismatches += nested
            features[name] = profile
        return cls(rows=len(rows), features=features)

    def merge(self, other: Profile) -> Profile:
        """The profile of both datasets together (the inputs are left as they are). A feature
        only one side has is kept as that side profiled it."""
        features: dict[str, FeatureProfile] = {}
        for name in dict.fromkeys([*self.features, *other.features]):
            mine, theirs = self.features.get(name), other.features.get(name)
            if mine is None or theirs is None:
                features[name] = _copy_feature(mine if mine is not None else theirs)
            else:
                features[name] = _merge_feature(name, mine, theirs)
        return Profile(rows=self.rows + other.rows, features=features)

    def to_bytes(self) -> bytes:
        """A compact binary form: magic, a JSON header (counts, sums, sketch sizes) and each
        sketch's own serialization. ``from_bytes`` gives back an identical profile."""
        header: dict[str, Any] = {"version": _FORMAT_VERSION, "rows": self.rows, "features": []}
        blobs = []
        for name, feature in self.features.items():
            blob = feature.sketch.serialize()
            entry = {
                "name": name,
                "kind": feature.kind,
                "count": feature.count,
                "nulls": feature.nulls,
                "mismatches": feature.mismatches,
                "sketch_bytes": len(blob),
            }
            if isinstance(feature, NumericProfile):
                # repr() of a float round-trips exactly; NaN/inf cannot occur (finite inputs).
                entry.update(sum=feature.sum, m2=feature.m2)
            header["features"].append(entry)
            blobs.append(blob)
        head = json.dumps(header, separators=(",", ":")).encode()
        return _MAGIC + struct.pack("<I", len(head)) + head + b"".join(blobs)

    @classmethod
    def from_bytes(cls, data: bytes) -> Profile:
        try:
            return _decode(data)
        except InvalidInput:
            raise
        except Exception as exc:  # struct, JSON, UTF-8 or sketch errors all mean the same
            raise InvalidInput(f"not a cloche profile: {exc}") from exc

    def to_summary(self) -> dict[str, Any]:
        """A JSON-able digest: rows and, per feature, counts and its distribution's shape
        (min/max/mean/std and p1..p99 for numbers; the top categories and shares otherwise)."""
        return {
            "rows": self.rows,
            "features": {name: f.summary() for name, f in self.features.items()},
        }


def merge_all(profiles: Iterable[Profile]) -> Profile:
    """Merge any number of profiles (an empty iterable gives an empty profile)."""
    merged = Profile(rows=0, features={})
    for profile in profiles:
        merged = merged.merge(profile)
    return merged


def _kind(name: str, kind: str) -> Kind:
    if kind not in KINDS:
        raise InvalidInput(f"feature {name!r} has kind {kind!r}; expected numeric or categorical")
    return "numeric" if kind == "numeric" else "categorical"


def _merge_feature(name: str, mine: FeatureProfile, theirs: FeatureProfile) -> FeatureProfile:
    if isinstance(mine, NumericProfile) and isinstance(theirs, NumericProfile):
        return mine.merge(theirs)
    if isinstance(mine, CategoricalProfile) and isinstance(theirs, CategoricalProfile):
        return mine.merge(theirs)
    raise InvalidInput(
        f"feature {name!r} is {mine.kind} in one profile and {theirs.kind} in the other"
    )


def _copy_feature(feature: FeatureProfile | None) -> FeatureProfile:
    assert feature is not None
    return dataclasses.replace(feature, sketch=copy.copy(feature.sketch))


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


# --- building ---------------------------------------------------------------------------------


def _profile_column(column: pa.ChunkedArray, kind: Kind) -> FeatureProfile:
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_null(column.type):
        profile = _empty(kind)
        profile.count = profile.nulls = len(column)
        return profile
    if kind == "numeric":
        return _numeric(column)
    return _categorical(column)


def _numeric(column: pa.ChunkedArray) -> NumericProfile:
    profile = NumericProfile(count=len(column), nulls=column.null_count)
    present = pc.drop_null(column)
    if pa.types.is_string(present.type) or pa.types.is_large_string(present.type):
        present, unparsed = _parse_numbers(present)
        profile.mismatches += unparsed
    elif pa.types.is_boolean(present.type):
        present = present.cast(pa.float64())  # a typed bool column counts as 0/1
    elif kind_of_arrow(present.type) != "numeric":
        profile.mismatches += len(present)  # dates, bytes, lists...: not numbers
        return profile
    # The sketch's binding takes only writeable arrays; Arrow's buffers are read-only.
    values = np.array(present.to_numpy(), dtype=np.float64)
    nan = np.isnan(values)
    finite = np.isfinite(values)
    profile.nulls += int(nan.sum())
    profile.mismatches += int((~finite & ~nan).sum())
    values = values[finite] if not finite.all() else values
    if len(values):
        profile.sketch.update(values)
        profile.sum = float(values.sum())
        profile.m2 = float(np.square(values - profile.sum / len(values)).sum())
    return profile


def _parse_numbers(strings: pa.ChunkedArray) -> tuple[pa.ChunkedArray, int]:
    """The strings that are numbers (surrounding blanks allowed), as float64, and how many were
    not. An empty string counts as a number-shaped NaN, i.e. a null."""
    trimmed = pc.utf8_trim_whitespace(strings)
    trimmed = pc.if_else(pc.equal(trimmed, ""), "nan", trimmed)
    parseable = pc.match_substring_regex(trimmed, _NUMBER, ignore_case=True)
    numbers = pc.filter(trimmed, parseable).cast(pa.float64())
    return numbers, len(strings) - len(numbers)


def _categorical(column: pa.ChunkedArray) -> CategoricalProfile:
    profile = CategoricalProfile(count=len(column), nulls=column.null_count)
    if pa.types.is_nested(column.type):
        profile.mismatches = len(column) - column.null_count
        return profile
    counts = pc.value_counts(column)
    values = counts.field("values").to_pylist()
    weights = counts.field("counts").to_pylist()
    for value, weight in zip(values, weights, strict=True):
        if value is None:
            continue
        if isinstance(value, float) and math.isnan(value):
            profile.nulls += weight
            continue
        profile.sketch.update(category_label(value), weight)
    return profile


def _column_from_values(values: list[Any]) -> tuple[pa.Array, int]:
    """An Arrow array of JSON-like values, and how many lists/objects were nulled out of it.
    Mixed scalar types (1 and "a") become text, so a numeric profile counts the mismatches."""
    nested = 0
    scalars: list[Any] = []
    for value in values:
        if isinstance(value, list | dict | tuple):
            nested += 1
            scalars.append(None)
        else:
            scalars.append(value)
    try:
        return pa.array(scalars), nested
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in scalars], pa.string()), nested


# --- decoding ---------------------------------------------------------------------------------


def _decode(data: bytes) -> Profile:
    if not data.startswith(_MAGIC):
        raise InvalidInput("not a cloche profile (bad magic bytes)")
    offset = len(_MAGIC)
    (head_len,) = struct.unpack_from("<I", data, offset)
    offset += 4
    header = json.loads(data[offset : offset + head_len])
    offset += head_len
    if header.get("version") != _FORMAT_VERSION:
        raise InvalidInput(f"unsupported profile format version {header.get('version')!r}")
    features: dict[str, FeatureProfile] = {}
    for entry in header["features"]:
        blob = data[offset : offset + entry["sketch_bytes"]]
        if len(blob) != entry["sketch_bytes"]:
            raise InvalidInput("not a cloche profile (truncated)")
        offset += len(blob)
        counts = {k: int(entry[k]) for k in ("count", "nulls", "mismatches")}
        if entry["kind"] == "numeric":
            features[entry["name"]] = NumericProfile(
                sketch=kll_doubles_sketch.deserialize(blob),
                sum=float(entry["sum"]),
                m2=float(entry["m2"]),
                **counts,
            )
        else:
            features[entry["name"]] = CategoricalProfile(
                sketch=frequent_strings_sketch.deserialize(blob), **counts
            )
    if offset != len(data):
        raise InvalidInput("not a cloche profile (trailing bytes)")
    return Profile(rows=int(header["rows"]), features=features)
