"""Data quality of a window against its baseline."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest

from cloche.errors import InvalidInput
from cloche.monitoring.profiles import Profile
from cloche.monitoring.quality import quality


def _baseline() -> Profile:
    rng = np.random.default_rng(1)
    return Profile.from_table(
        pa.table(
            {
                "x": rng.uniform(0, 10, 5000),
                "c": pa.array(np.array(["a", "b", "c"])[rng.integers(0, 3, 5000)]),
            }
        )
    )


def test_rates_of_a_small_window_are_exact() -> None:
    window = Profile.from_rows(
        [
            {"x": 5.0, "c": "a"},
            {"x": -1.0, "c": "zzz"},
            {"x": None, "c": None},
            {"x": "oops", "c": "b"},
            {"x": 11.0, "c": "zzz"},
            {"x": math.nan, "c": ["nested"]},
            {"x": 3.0, "c": "new"},
            {"x": 9.0, "c": "c"},
        ],
        {"x": "numeric", "c": "categorical"},
    )
    found = quality(_baseline(), window)
    x, c = found["x"], found["c"]
    assert (x.rows, x.missing_rate, x.mismatch_rate) == (8, 2 / 8, 1 / 8)
    assert x.out_of_range_rate == 2 / 8 and x.unseen_category_rate is None and x.exact
    assert (c.missing_rate, c.mismatch_rate) == (1 / 8, 1 / 8)
    assert c.unseen_category_rate == 3 / 8 and c.out_of_range_rate is None and c.exact
    for q in found.values():
        body = q.to_dict()
        json.dumps(body, allow_nan=False)
        for key in ("missing_rate", "mismatch_rate", "out_of_range_rate", "unseen_category_rate"):
            assert body[key] is None or 0.0 <= body[key] <= 1.0


def test_out_of_range_from_a_large_window_sketch() -> None:
    rng = np.random.default_rng(2)
    values = rng.uniform(-2, 12, 100_000)  # 2/14 below 0, 2/14 above 10
    window = Profile.from_table(pa.table({"x": values}))
    found = quality(_baseline(), window)["x"]
    baseline_x = _baseline().features["x"]
    truth = np.mean((values < baseline_x.min) | (values > baseline_x.max))  # type: ignore[union-attr]
    assert found.out_of_range_rate == pytest.approx(truth, abs=2 * 0.0133)
    assert not found.exact and found.note is not None


def test_a_window_inside_the_range_is_exactly_in_range() -> None:
    rng = np.random.default_rng(3)
    window = Profile.from_table(pa.table({"x": rng.uniform(1, 9, 100_000)}))
    found = quality(_baseline(), window)["x"]
    assert found.out_of_range_rate == 0.0 and found.exact


def test_unseen_categories_are_marked_inexact_when_the_baseline_sketch_overflowed() -> None:
    baseline = Profile.from_table(pa.table({"c": [f"id{i}" for i in range(5000)] + ["a"] * 4000}))
    window = Profile.from_table(pa.table({"c": ["a"] * 50 + ["id1"] * 50}))
    found = quality(baseline, window)["c"]
    assert not found.exact and "upper bound" in (found.note or "")
    assert found.unseen_category_rate is not None and 0.0 <= found.unseen_category_rate <= 0.5


def test_features_missing_from_the_baseline_and_kind_conflicts() -> None:
    window = Profile.from_table(pa.table({"x": [1.0, None], "extra": ["a", "b"]}))
    found = quality(_baseline(), window)
    assert found["extra"].unseen_category_rate is None
    assert found["extra"].note == "extra is not in the baseline"
    assert found["x"].missing_rate == 0.5
    with pytest.raises(InvalidInput, match="numeric in the baseline"):
        quality(_baseline(), Profile.from_table(pa.table({"x": ["a"]})))


def test_empty_windows_break_nothing() -> None:
    window = Profile.from_table(
        pa.table({"x": pa.array([], pa.float64()), "c": pa.array([], pa.string())})
    )
    found = quality(_baseline(), window)
    assert found["x"].missing_rate == 0.0 and found["x"].out_of_range_rate == 0.0
    assert found["c"].unseen_category_rate == 0.0
