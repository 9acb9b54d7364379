"""Profiles: what they count, how they merge, and that their bytes round-trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest

from cloche.errors import InvalidDataset, InvalidInput
from cloche.monitoring.feature_profiles import (
    KLL_K,
    CategoricalProfile,
    NumericProfile,
    category_label,
    kind_of_arrow,
    kind_of_dtype,
)
from cloche.monitoring.profiles import Profile, merge_all


def _numeric(profile: Profile, name: str) -> NumericProfile:
    feature = profile.features[name]
    assert isinstance(feature, NumericProfile)
    return feature


def _categorical(profile: Profile, name: str) -> CategoricalProfile:
    feature = profile.features[name]
    assert isinstance(feature, CategoricalProfile)
    return feature


def _same(a: Profile, b: Profile) -> None:
    """Equal counts, sums and sketch contents."""
    assert a.rows == b.rows
    assert a.to_summary() == b.to_summary()
    for name, feature in a.features.items():
        other = b.features[name]
        if isinstance(feature, NumericProfile):
            assert isinstance(other, NumericProfile)
            assert feature.sketch.serialize() == other.sketch.serialize()
            assert (feature.sum, feature.m2) == (other.sum, other.m2)
        else:
            assert isinstance(other, CategoricalProfile)
            assert feature.counts() == other.counts()
            assert feature.count_error == other.count_error


def test_numeric_counts_nulls_nan_and_non_finite_values() -> None:
    table = pa.table({"x": pa.array([1.0, None, math.nan, 3.0, math.inf, -math.inf, 5.0])})
    x = _numeric(Profile.from_table(table), "x")
    assert (x.count, x.nulls, x.mismatches, x.valid) == (7, 2, 2, 3)
    assert (x.min, x.max, x.mean) == (1.0, 5.0, 3.0)
    assert x.std == pytest.approx(np.std([1.0, 3.0, 5.0]))


def test_numeric_from_strings_counts_what_does_not_parse() -> None:
    column = pa.array(["1.5", " 2 ", "1e3", "abc", None, "", "NaN", "-.5", "True", "0x10"])
    x = _numeric(Profile.from_table(pa.table({"x": column}), {"x": "numeric"}), "x")
    # None, "" and "NaN" are missing; "abc", "True" and "0x10" are not numbers.
    assert (x.count, x.nulls, x.mismatches, x.valid) == (10, 3, 3, 4)
    assert sorted(x.retained_values().tolist()) == [-0.5, 1.5, 2.0, 1000.0]


def test_other_columns_for_numeric_features() -> None:
    table = pa.table(
        {
            "flag": pa.array([True, False, True, None]),
            "empty": pa.array([None, None, None, None]),
            "day": pa.array(["a", "b", None, "a"]).dictionary_encode(),
            "ints": pa.array([1, 2, None, 4], pa.int32()),
        }
    )
    kinds = dict.fromkeys(table.column_names, "numeric")
    profile = Profile.from_table(table, kinds)
    assert _numeric(profile, "flag").mean == pytest.approx(2 / 3)  # a typed bool is 0/1
    empty = _numeric(profile, "empty")
    assert (empty.count, empty.nulls, empty.valid) == (4, 4, 0)
    assert math.isnan(empty.mean) and math.isnan(empty.quantiles([0.5])[0])
    day = _numeric(profile, "day")
    assert (day.nulls, day.mismatches) == (1, 3)
    assert _numeric(profile, "ints").sum == 7.0


def test_categorical_counts_with_labels_that_agree_across_types() -> None:
    assert [category_label(v) for v in (1, 1.0, "1", 2.5, True, "a")] == [
        "1",
        "1",
        "1",
        "2.5",
        "True",
        "a",
    ]
    table = pa.table(
        {
            "s": pa.array(["a", "b", None, "a"]),
            "d": pa.array(["x", "y", "x", None]).dictionary_encode(),
            "f": pa.array([1.0, 2.0, math.nan, 1.0]),
            "b": pa.array([True, None, False, True]),
            "nested": pa.array([[1], None, [2, 3], []]),
        }
    )
    profile = Profile.from_table(table, dict.fromkeys(table.column_names, "categorical"))
    assert _categorical(profile, "s").counts() == {"a": 2, "b": 1}
    assert _categorical(profile, "d").counts() == {"x": 2, "y": 1}
    f = _categorical(profile, "f")
    assert (f.counts(), f.nulls) == ({"1": 2, "2": 1}, 1)
    assert _categorical(profile, "b").counts() == {"True": 2, "False": 1}
    nested = _categorical(profile, "nested")
    assert (nested.count, nested.nulls, nested.mismatches, nested.valid) == (4, 1, 3, 0)
    assert all(_categorical(profile, n).exact for n in ("s", "d", "f", "b"))


def test_kinds_from_arrow_types_and_signature_dtypes() -> None:
    table = pa.table({"n": [1.5], "i": [2], "s": ["a"], "b": [True]})
    assert Profile.from_table(table).kinds == {
        "n": "numeric",
        "i": "numeric",
        "s": "categorical",
        "b": "categorical",
    }
    assert kind_of_arrow(pa.dictionary(pa.int8(), pa.string())) == "categorical"
    assert [kind_of_dtype(d) for d in ("float32", "int64", "string", "category", "bool")] == [
        "numeric",
        "numeric",
        "categorical",
        "categorical",
        "categorical",
    ]


def test_bad_kinds_and_missing_columns_are_refused() -> None:
    table = pa.table({"x": [1.0]})
    with pytest.raises(InvalidDataset, match="'y'"):
        Profile.from_table(table, {"x": "numeric", "y": "numeric"})
    with pytest.raises(InvalidInput, match="ordinal"):
        Profile.from_table(table, {"x": "ordinal"})


def test_from_rows() -> None:
    rows = [
        {"age": 30, "city": "Paris", "tags": ["a"]},
        {"age": "forty", "city": "Lyon"},
        {"age": 41.5, "city": None, "tags": "x"},
        {"city": {"name": "Nice"}},
    ]
    profile = Profile.from_rows(rows, {"age": "numeric", "city": "categorical"})
    age = _numeric(profile, "age")
    assert (age.count, age.nulls, age.mismatches, age.valid, age.sum) == (4, 1, 1, 2, 71.5)
    city = _categorical(profile, "city")
    assert (city.nulls, city.mismatches, city.counts()) == (1, 1, {"Paris": 1, "Lyon": 1})
    inferred = Profile.from_rows([{"a": 1, "b": "x"}, {"a": 2.5, "b": "y"}])
    assert inferred.kinds == {"a": "numeric", "b": "categorical"}


def test_unknown_kind_in_from_rows_is_refused() -> None:
    with pytest.raises(InvalidInput):
        Profile.from_rows([{"a": 1}], {"a": "text"})


def _check_quantiles(profile: NumericProfile, data: np.ndarray) -> None:
    """Each sketched quantile is the data's value at a rank within the rank error."""
    ranks = np.linspace(0.01, 0.99, 99)
    got = profile.quantiles(ranks)
    below = np.searchsorted(data, got, side="left") / len(data)  # share < the quantile
    at_or_below = np.searchsorted(data, got, side="right") / len(data)
    assert np.all(at_or_below >= ranks - profile.rank_error - 1e-12)
    assert np.all(below <= ranks + profile.rank_error + 1e-12)


def _frame(rng: np.random.Generator, rows: int, shift: float = 0.0) -> pa.Table:
    cities = np.array(["Paris", "Lyon", "Nice", "Lille"])
    return pa.table(
        {
            "x": rng.normal(10 + shift, 2, rows),
            "n": rng.poisson(3, rows).astype(np.int64),
            "city": pa.array(cities[rng.integers(0, 4, rows)]),
        }
    )


def test_merge_equals_profiling_the_union() -> None:
    rng = np.random.default_rng(1)
    parts = [_frame(rng, rows, shift) for rows, shift in ((5000, 0), (20_000, 1), (1, 2))]
    profiles = [Profile.from_table(t) for t in parts]
    whole = Profile.from_table(pa.concat_tables(parts))
    merged = merge_all(profiles)
    assert merged.rows == whole.rows == 25_001
    for name in ("x", "n"):
        m, w = _numeric(merged, name), _numeric(whole, name)
        assert (m.count, m.valid, m.min, m.max) == (w.count, w.valid, w.min, w.max)
        assert m.mean == pytest.approx(w.mean, rel=1e-12)
        assert m.std == pytest.approx(w.std, rel=1e-9)
        _check_quantiles(m, np.sort(pa.concat_tables(parts)[name].to_numpy()))
    assert _categorical(merged, "city").counts() == _categorical(whole, "city").counts()


def test_merge_is_associative_and_leaves_its_inputs_alone() -> None:
    rng = np.random.default_rng(2)
    tables = [_frame(rng, 3000) for _ in range(3)]
    a, b, c = (Profile.from_table(t) for t in tables)
    before = a.to_summary()
    left, right = a.merge(b).merge(c), a.merge(b.merge(c))
    data = pa.concat_tables(tables)
    assert a.to_summary() == before
    for name in ("x", "n"):
        lx, rx = _numeric(left, name), _numeric(right, name)
        assert (lx.count, lx.valid, lx.min, lx.max) == (rx.count, rx.valid, rx.min, rx.max)
        assert lx.mean == pytest.approx(rx.mean) and lx.std == pytest.approx(rx.std)
        _check_quantiles(lx, np.sort(data[name].to_numpy()))
        _check_quantiles(rx, np.sort(data[name].to_numpy()))
    assert _categorical(left, "city").counts() == _categorical(right, "city").counts()


def test_merge_keeps_one_sided_features_and_refuses_kind_conflicts() -> None:
    a = Profile.from_table(pa.table({"x": [1.0, 2.0]}))
    b = Profile.from_table(pa.table({"y": ["u"]}))
    merged = a.merge(b)
    assert merged.kinds == {"x": "numeric", "y": "categorical"}
    assert _numeric(merged, "x").sketch is not _numeric(a, "x").sketch
    with pytest.raises(InvalidInput, match="numeric in one profile"):
        a.merge(Profile.from_table(pa.table({"x": ["a"]})))
    assert merge_all([]).rows == 0


def test_std_stays_accurate_when_the_mean_is_large() -> None:
    rng = np.random.default_rng(3)
    values = 1e9 + rng.normal(0, 1, 40_000)
    chunks = np.array_split(values, 8)
    merged = merge_all(Profile.from_table(pa.table({"x": c})) for c in chunks)
    assert _numeric(merged, "x").std == pytest.approx(np.std(values), rel=1e-6)


def test_bytes_round_trip_exactly() -> None:
    rng = np.random.default_rng(4)
    table = _frame(rng, 49_999)
    table = table.append_column("s", pa.array(["1", "oops", None] * (table.num_rows // 3) + ["2"]))
    profile = Profile.from_table(table, {"x": "numeric", "n": "numeric", "city": "categorical"})
    profile = profile.merge(Profile.from_table(table.select(["s"]), {"s": "numeric"}))
    data = profile.to_bytes()
    again = Profile.from_bytes(data)
    _same(profile, again)
    _same(again, Profile.from_bytes(again.to_bytes()))
    assert len(data) < 20_000  # sketches, not rows


def test_corrupt_bytes_are_refused() -> None:
    data = Profile.from_table(pa.table({"x": [1.0, 2.0], "c": ["a", "b"]})).to_bytes()
    for bad in (b"", b"garbage", data[:-3], data + b"x", data[:10] + b"\xff" + data[11:]):
        with pytest.raises(InvalidInput):
            Profile.from_bytes(bad)


def test_summary_is_json() -> None:
    rng = np.random.default_rng(5)
    table = _frame(rng, 2000).append_column("empty", pa.array([None] * 2000, pa.float64()))
    summary = Profile.from_table(table).to_summary()
    json.dumps(summary, allow_nan=False)
    x = summary["features"]["x"]
    assert set(x["quantiles"]) == {"p1", "p5", "p25", "p50", "p75", "p95", "p99"}
    assert x["quantiles"]["p50"] == pytest.approx(10, abs=0.2)
    assert summary["features"]["empty"]["mean"] is None
    city = summary["features"]["city"]
    assert city["exact"] and city["distinct"] == 4
    assert sum(top["count"] for top in city["top"]) == 2000


def test_many_categories_make_the_counts_inexact() -> None:
    values = [f"user{i}" for i in range(5000)] + ["common"] * 3000
    city = _categorical(Profile.from_table(pa.table({"c": values})), "c")
    assert not city.exact and city.count_error > 0
    counts = city.counts()
    assert counts["common"] <= 3000 <= counts["common"] + city.count_error
    assert city.summary()["distinct"] is None


def test_small_numeric_sketches_are_exact() -> None:
    values = np.arange(KLL_K, dtype=np.float64)
    x = _numeric(Profile.from_table(pa.table({"x": values})), "x")
    assert x.rank_error == 0
    assert np.array_equal(x.retained_values(), values)
