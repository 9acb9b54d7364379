"""Profiles: a mergeable per-feature summary of a dataset, built from Apache DataSketches.

A ``Profile`` is the feature profiles (``feature_profiles.py``: a KLL quantile sketch per
numeric feature, a frequent-items sketch per categorical one) of a dataset's rows. This module
builds them from a table's columns or JSON-like rows, merges them, and encodes them as bytes
(the ``CLPROF`` format) and as a JSON-able summary.

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
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasketches import frequent_strings_sketch, kll_doubles_sketch

from cloche.errors import InvalidDataset, InvalidInput
from cloche.monitoring.feature_profiles import (
    KINDS,
    CategoricalProfile,
    FeatureProfile,
    Kind,
    NumericProfile,
    category_label,
    kind_of_arrow,
)

# A number as JSON or CSV writes it (Arrow's cast rejects anything else and the whole array
# with it, so the parseable values are picked out first).
_NUMBER = r"^[+-]?((\d+\.?\d*|\.\d+)(e[+-]?\d+)?|nan|inf|infinity)$"  # case-insensitive
_MAGIC = b"CLPROF"
_FORMAT_VERSION = 1


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


# --- building ---------------------------------------------------------------------------------


def _empty(kind: Kind) -> FeatureProfile:
    return NumericProfile() if kind == "numeric" else CategoricalProfile()


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
