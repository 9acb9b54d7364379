"""Comparing a converted model's outputs with the original's, output by output."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cloche.export import parity
from cloche.export.sample import Sample

X = np.zeros((4, 2))


class Model:
    framework = "test"

    def __init__(self, labels: Any, proba: Any = None) -> None:
        self.labels = np.asarray(labels)
        if proba is not None:
            self.proba = np.asarray(proba, dtype=np.float64)
            self.predict_proba = lambda _X: self.proba

    def predict(self, _X: Any) -> np.ndarray:
        return self.labels


PROBA = [[0.9, 0.1], [0.2, 0.8], [0.50002, 0.49998], [0.3, 0.7]]


def _compare(original: Model, converted: Model, classification: bool = True) -> Any:
    return parity.compare(
        original, converted, Sample(X, "generated"), classification=classification
    )  # type: ignore[arg-type]


def test_identical_outputs_pass_and_the_manifest_records_every_figure() -> None:
    report = _compare(Model([0, 1, 0, 1], PROBA), Model([0, 1, 0, 1], PROBA))
    assert report.passed
    recorded = report.to_manifest()
    assert recorded["rows"] == 4 and recorded["sample"] == "generated" and recorded["passed"]
    assert recorded["outputs"]["predict"] == {
        "mismatched_rows": 0, "tied_rows": 0, "rows_over_tolerance": 0, "passed": True,
    }  # fmt: skip
    assert recorded["outputs"]["probabilities"]["max_abs_diff"] == 0.0
    assert recorded["tolerance"]["probabilities"] == {"atol": parity.PROBA_ATOL, "rtol": 0.0}


def test_a_label_may_differ_only_where_the_top_two_probabilities_tie() -> None:
    # Row 2's top two probabilities are 4e-5 apart: within the tolerance, either label is fine.
    report = _compare(Model([0, 1, 0, 1], PROBA), Model([0, 1, 1, 1], PROBA))
    assert report.passed
    assert report.to_manifest()["outputs"]["predict"]["tied_rows"] == 1

    report = _compare(Model([0, 1, 0, 1], PROBA), Model([1, 1, 0, 1], PROBA))
    (failed,) = report.failures()
    assert failed.name == "predict" and "different label on 1 of 4 rows" in failed.problem


def test_probabilities_beyond_the_tolerance_fail_with_the_largest_difference() -> None:
    shifted = np.asarray(PROBA) + np.array([[0, 0], [0, 0], [0, 0], [0.01, -0.01]])
    report = _compare(Model([0, 1, 0, 1], PROBA), Model([0, 1, 0, 1], shifted))
    (failed,) = report.failures()
    assert failed.name == "probabilities"
    assert failed.figures["rows_over_tolerance"] == 1
    assert failed.figures["max_abs_diff"] == pytest.approx(0.01)
    assert "differs by up to 0.01" in failed.problem


def test_string_labels_compare_as_text_and_missing_probabilities_fail() -> None:
    assert _compare(Model(["a", "b", "a", "b"]), Model(np.array(["a", "b", "a", "b"]))).passed
    report = _compare(Model([0, 1, 0, 1], PROBA), Model([0, 1, 0, 1]))
    assert [o.name for o in report.failures()] == ["probabilities"]


def test_regression_tolerance_scales_with_the_outputs() -> None:
    big = np.array([1e6, -2e6, 3e6, 0.0])
    report = _compare(Model(big), Model(big + 50.0), classification=False)  # 50 < 1e-4 * 3e6
    assert report.passed
    assert report.to_manifest()["tolerance"]["predict"]["atol"] == pytest.approx(300.0)
    failed = _compare(Model(big), Model(big + np.array([0, 0, 0, 400.0])), classification=False)
    assert failed.failures()[0].figures["rows_over_tolerance"] == 1
    # NaN on both sides is agreement; on one side it is a difference.
    nan = np.array([np.nan, 1.0, 2.0, 3.0])
    assert _compare(Model(nan), Model(nan.copy()), classification=False).passed
    assert not _compare(Model(nan), Model(np.nan_to_num(nan)), classification=False).passed
