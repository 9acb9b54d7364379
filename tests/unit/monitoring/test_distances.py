"""Distances: the exact definitions against scipy/numpy, and the sketch values against them."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from itertools import pairwise

import numpy as np
import pyarrow as pa
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp, wasserstein_distance

from cloche.errors import InvalidInput
from cloche.monitoring.distances import (
    BINS,
    DEFAULT_THRESHOLD,
    PSI_EPSILON,
    Distance,
    compare_categorical,
    compare_numeric,
    exact_categorical,
    exact_numeric,
)
from cloche.monitoring.feature_profiles import FeatureProfile
from cloche.monitoring.profiles import Profile, merge_all

ROWS = 100_000


def _feature(values: np.ndarray | list[object], kind: str | None = None) -> FeatureProfile:
    table = pa.table({"v": values})
    return Profile.from_table(table, {"v": kind} if kind else None).features["v"]


def _reference_masses(base: np.ndarray, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bin shares written out independently: (-inf, e1], (e1, e2], ..., (e_last, inf)."""
    edges = np.unique(np.quantile(base, np.arange(1, BINS) / BINS, method="inverted_cdf"))
    bounds = [-np.inf, *edges, np.inf]

    def shares(x: np.ndarray) -> np.ndarray:
        return np.array([np.mean((x > lo) & (x <= hi)) for lo, hi in pairwise(bounds)])

    return shares(base), shares(window)


def _pairs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(10)
    n = 4000
    return {
        "normal_shift": (rng.normal(0, 1, n), rng.normal(0.7, 1.3, n + 17)),
        "lognormal_same": (rng.lognormal(0, 1, n), rng.lognormal(0, 1, n)),
        "poisson": (rng.poisson(3, n).astype(float), rng.poisson(4, n // 2).astype(float)),
        "disjoint": (rng.uniform(0, 1, n), rng.uniform(5, 6, n)),
    }


@pytest.mark.parametrize("name", list(_pairs()))
def test_exact_numeric_equals_scipy_and_numpy_references(name: str) -> None:
    a, b = _pairs()[name]
    p, q = _reference_masses(a, b)
    js = exact_numeric(a, b, "js")
    assert js.value == pytest.approx(jensenshannon(p, q, base=2) ** 2, abs=1e-6)
    assert js.js_distance == pytest.approx(jensenshannon(p, q, base=2), abs=1e-6)
    assert (js.log_base, js.divergence, js.source) == (2, True, "exact")
    ks = exact_numeric(a, b, "ks")
    assert ks.value == pytest.approx(ks_2samp(a, b).statistic, abs=1e-6)
    w = exact_numeric(a, b, "wasserstein")
    assert w.value == pytest.approx(wasserstein_distance(a, b) / np.std(a), abs=1e-6)
    assert w.normalized_by == pytest.approx(np.std(a))
    pp, qq = np.maximum(p, PSI_EPSILON), np.maximum(q, PSI_EPSILON)
    assert exact_numeric(a, b, "psi").value == pytest.approx(
        np.sum((qq - pp) * np.log(qq / pp)), abs=1e-6
    )


def test_exact_numeric_drops_nan_and_inf_like_profiles() -> None:
    a = np.array([1.0, 2.0, np.nan, 3.0, np.inf])
    b = np.array([2.0, 3.0, 4.0, -np.inf])
    assert exact_numeric(a, b, "ks").value == pytest.approx(
        ks_2samp([1.0, 2.0, 3.0], [2.0, 3.0, 4.0]).statistic
    )


def test_exact_categorical_equals_value_count_references() -> None:
    rng = np.random.default_rng(11)
    cats = np.array(["a", "b", "c", "d"])
    base = list(cats[rng.choice(4, 3000, p=[0.4, 0.3, 0.2, 0.1])])
    window = list(cats[rng.choice(4, 2000, p=[0.1, 0.2, 0.3, 0.4])]) + ["new"] * 500 + [None] * 9
    cb, cw = Counter(base), Counter(v for v in window if v is not None)
    labels = sorted(set(cb) | set(cw))
    p = np.array([cb[c] / sum(cb.values()) for c in labels])
    q = np.array([cw[c] / sum(cw.values()) for c in labels])
    assert exact_categorical(base, window).value == pytest.approx(np.max(np.abs(p - q)), abs=1e-9)
    assert exact_categorical(base, window, "js").value == pytest.approx(
        jensenshannon(p, q, base=2) ** 2, abs=1e-6
    )
    pp, qq = np.maximum(p, PSI_EPSILON), np.maximum(q, PSI_EPSILON)
    assert exact_categorical(base, window, "psi").value == pytest.approx(
        np.sum((qq - pp) * np.log(qq / pp)), abs=1e-6
    )
    assert exact_categorical([1, 2.0, "3"], ["1", 2, 3.0]).value == 0.0


@pytest.mark.parametrize("metric", ["js", "psi", "ks", "wasserstein"])
def test_sketches_that_hold_every_value_give_the_exact_value(metric: str) -> None:
    rng = np.random.default_rng(12)
    a, b = rng.normal(0, 1, 150), np.round(rng.normal(0.5, 2, 120), 1)
    found = compare_numeric(_feature(a), _feature(b), metric)
    assert found.value == pytest.approx(exact_numeric(a, b, metric).value, abs=1e-9)
    assert (found.error_bound, found.bound, found.source) == (0.0, "guaranteed", "sketch")


def _distributions() -> dict[str, Callable[[np.random.Generator, float], np.ndarray]]:
    return {
        "normal": lambda rng, shift: rng.normal(shift, 1, ROWS),
        "lognormal": lambda rng, shift: rng.lognormal(0, 1, ROWS) + 2.16 * shift,
        "bimodal": lambda rng, shift: (
            np.where(rng.random(ROWS) < 0.4, rng.normal(-2, 0.5, ROWS), rng.normal(2, 1, ROWS))
            + 2 * shift
        ),
        "integers": lambda rng, shift: rng.poisson(3, ROWS).astype(float) + round(1.7 * shift),
        "uniform": lambda rng, shift: rng.uniform(0, 10, ROWS) + 2.9 * shift,
    }


@pytest.mark.parametrize("shift", [0.0, 0.5, 1.5])
@pytest.mark.parametrize("name", list(_distributions()))
def test_sketch_values_are_within_their_bound_of_the_exact_ones(name: str, shift: float) -> None:
    make = _distributions()[name]
    rng = np.random.default_rng(13)
    a, b = make(rng, 0.0), make(rng, shift)
    base, window = _feature(a), _feature(b)
    for metric in ("js", "psi", "ks", "wasserstein"):
        sketch, exact = compare_numeric(base, window, metric), exact_numeric(a, b, metric)
        assert abs(sketch.value - exact.value) <= sketch.error_bound, (metric, sketch, exact)
        assert sketch.bound == ("guaranteed" if metric == "ks" else "empirical")
    ks = compare_numeric(base, window, "ks")
    assert ks.error_bound == pytest.approx(2 * 0.0133, abs=1e-3)  # 2 eps at k=200


def test_categorical_sketches_are_exact_below_capacity_and_bounded_beyond() -> None:
    rng = np.random.default_rng(14)
    base = [f"c{i}" for i in rng.zipf(1.5, 20_000) % 200]
    window = [f"c{i}" for i in rng.zipf(1.3, 20_000) % 250]
    b, w = _feature(base), _feature(window)
    for metric in ("linf", "js", "psi"):
        found = compare_categorical(b, w, metric)
        assert found.value == pytest.approx(exact_categorical(base, window, metric).value)
        assert found.error_bound == 0.0
    many = [f"id{i}" for i in range(6000)] + ["a"] * 6000 + ["b"] * 3000
    other = [f"id{i}" for i in range(3000, 9000)] + ["a"] * 3000 + ["b"] * 6000
    mb, mw = _feature(many), _feature(other)
    for metric in ("linf", "js", "psi"):
        found = compare_categorical(mb, mw, metric)
        assert found.error_bound > 0
        exact = exact_categorical(many, other, metric).value
        assert abs(found.value - exact) <= found.error_bound
    assert compare_categorical(mb, mw).bound == "guaranteed"


def _features(rng: np.random.Generator, rows: int, drifted: set[str]) -> pa.Table:
    """10 numeric and 10 categorical features; those in ``drifted`` moved."""
    columns: dict[str, object] = {}
    shift = 2.0  # std; JS reaches 0.3 at about 1.5 std for normal data: too close to call
    for i in range(10):
        name = f"num{i}"
        moved = shift if name in drifted else 0.0
        if i % 3 == 0:
            columns[name] = rng.normal(i + moved * (1 + i), 1 + i, rows)
        elif i % 3 == 1:
            columns[name] = rng.lognormal(0, 0.5, rows) + moved * 0.6
        else:
            columns[name] = rng.poisson(4 + i, rows) + round(moved * math.sqrt(4 + i))
    cats = np.array([f"v{j}" for j in range(20)])
    for i in range(10):
        name = f"cat{i}"
        weights = np.arange(1, 21, dtype=np.float64) ** (i % 3)
        if name in drifted:
            weights[i] += weights.sum()  # one category jumps to about half the rows
        columns[name] = pa.array(cats[rng.choice(20, rows, p=weights / weights.sum())])
    return pa.table(columns)


def _default_distances(baseline: Profile, window: Profile) -> dict[str, Distance]:
    out = {}
    for name, feature in baseline.features.items():
        if feature.kind == "numeric":
            out[name] = compare_numeric(feature, window.features[name])
        else:
            out[name] = compare_categorical(feature, window.features[name])
    return out


def test_large_samples_of_the_same_distribution_raise_no_alarm() -> None:
    baseline = Profile.from_table(_features(np.random.default_rng(20), ROWS, set()))
    window = Profile.from_table(_features(np.random.default_rng(21), ROWS, set()))
    found = _default_distances(baseline, window)
    assert len(found) == 20
    worst = max(d.value for d in found.values())
    print(f"max default distance, same distribution, 100k vs 100k: {worst:.5f}")
    assert worst < 0.02  # far below the 0.3 threshold, not just under it
    assert all(d.value < DEFAULT_THRESHOLD for d in found.values())


@pytest.mark.parametrize(
    "drifted",
    [set(), {"num0", "cat1"}, {"num1", "num2", "num6", "cat0", "cat5"}],
    ids=["k0", "k2", "k5"],
)
def test_injected_drift_flags_exactly_the_drifted_features(drifted: set[str]) -> None:
    baseline = Profile.from_table(_features(np.random.default_rng(30), ROWS, set()))
    window = Profile.from_table(_features(np.random.default_rng(31), ROWS, drifted))
    found = _default_distances(baseline, window)
    flagged = {name for name, d in found.items() if d.value > DEFAULT_THRESHOLD}
    assert flagged == drifted, {n: round(d.value, 3) for n, d in found.items()}


def test_merged_window_profiles_give_the_distances_of_one_profile() -> None:
    rng = np.random.default_rng(40)
    baseline_values = rng.normal(0, 1, ROWS)
    hours = [rng.normal(0.4, 1.2, 5000) for _ in range(24)]
    cats = np.array(["a", "b", "c", "d", "e"])
    baseline_cats = cats[rng.integers(0, 5, ROWS)]
    hour_cats = [cats[rng.choice(5, 5000, p=[0.4, 0.3, 0.1, 0.1, 0.1])] for _ in range(24)]

    def profile(values: np.ndarray, labels: np.ndarray) -> Profile:
        return Profile.from_table(pa.table({"x": values, "c": pa.array(labels)}))

    baseline = profile(baseline_values, baseline_cats)
    merged = merge_all(profile(v, c) for v, c in zip(hours, hour_cats, strict=True))
    whole = profile(np.concatenate(hours), np.concatenate(hour_cats))
    assert merged.rows == whole.rows == 24 * 5000
    for metric in ("js", "psi", "ks", "wasserstein"):
        a = compare_numeric(baseline.features["x"], merged.features["x"], metric)
        b = compare_numeric(baseline.features["x"], whole.features["x"], metric)
        exact = exact_numeric(baseline_values, np.concatenate(hours), metric)
        assert abs(a.value - b.value) <= a.error_bound + b.error_bound
        assert abs(a.value - exact.value) <= a.error_bound
    for metric in ("linf", "js", "psi"):
        a = compare_categorical(baseline.features["c"], merged.features["c"], metric)
        b = compare_categorical(baseline.features["c"], whole.features["c"], metric)
        assert a.value == pytest.approx(b.value)


def test_edges_of_discrete_data_are_merged() -> None:
    rng = np.random.default_rng(50)
    a = rng.choice([1.0, 2.0, 5.0], 10_000, p=[0.5, 0.3, 0.2])
    found = compare_numeric(_feature(a), _feature(a[::-1].copy()), "js")
    assert found.bin_edges == (1.0, 2.0, 5.0)
    assert found.bins == 4
    assert found.value <= found.error_bound < 0.01


def test_distance_to_dict_is_json_and_says_what_it_means() -> None:
    rng = np.random.default_rng(51)
    base, window = _feature(rng.normal(0, 1, 500)), _feature(rng.normal(1, 1, 500))
    js = compare_numeric(base, window).to_dict()
    assert js["metric"] == "js" and js["log_base"] == 2 and js["divergence"] is True
    assert js["js_distance"] == pytest.approx(math.sqrt(js["value"]))
    assert len(js["bin_edges"]) == BINS - 1 and js["source"] == "sketch"
    assert "Jensen-Shannon" in js["definition"]
    w = compare_numeric(base, window, "wasserstein").to_dict()
    assert "std" in w["definition"] and w["normalized_by"] > 0
    json.dumps([js, w, compare_categorical(_feature(["a"]), _feature(["b"])).to_dict()])


def test_empty_sides_and_constant_baselines() -> None:
    empty = _feature(pa.array([None, None], pa.float64()))
    full = _feature(np.array([1.0, 2.0]))
    found = compare_numeric(full, empty)
    assert math.isnan(found.value) and found.note == "the window has no valid values"
    assert found.to_dict()["value"] is None
    json.dumps(found.to_dict(), allow_nan=False)
    assert math.isnan(exact_numeric(np.array([]), np.array([1.0]), "ks").value)
    assert math.isnan(compare_categorical(_feature(["a"]), _feature([None], "categorical")).value)
    constant = compare_numeric(_feature(np.ones(10)), _feature(np.full(10, 3.0)), "wasserstein")
    assert constant.value == 2.0 and constant.note is not None and "raw" in constant.note


def test_wrong_metrics_and_kinds_are_refused() -> None:
    numeric, categorical = _feature(np.array([1.0])), _feature(["a"])
    with pytest.raises(InvalidInput, match="unknown numeric metric"):
        compare_numeric(numeric, numeric, "linf")
    with pytest.raises(InvalidInput, match="unknown categorical metric"):
        compare_categorical(categorical, categorical, "ks")
    with pytest.raises(InvalidInput):
        compare_numeric(numeric, categorical)
    with pytest.raises(InvalidInput):
        compare_categorical(numeric, categorical)
    with pytest.raises(InvalidInput, match="bins"):
        compare_numeric(numeric, numeric, bins=1)
