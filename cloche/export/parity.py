"""Parity: the converted model's outputs against the original's, on one sample, within tolerances.

Tolerances, chosen for a float64 model run in float32 by onnxruntime:
- labels match exactly, except on rows where the original's two most probable classes are within
  PROBA_ATOL of each other (a tie that float32 rounding may break either way);
- probabilities match within PROBA_ATOL absolute (they lie in [0, 1]; float32 keeps ~7 digits,
  and tree ensembles sum hundreds of rounded leaf values);
- regression values match within ``atol + rtol * |original|``, with rtol = REGRESSION_RTOL and
  atol = REGRESSION_ATOL_SCALE times the largest |original value| on the sample, so the check
  is alike for targets in cents and in millions (and a value near zero is not held to a
  relative bound that float32 cannot meet).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cloche.export.sample import Sample
from cloche.runtimes.base import LoadedModel, has_predict_proba

PROBA_ATOL = 1e-4
REGRESSION_RTOL = 1e-4
REGRESSION_ATOL_SCALE = 1e-4


@dataclass
class OutputParity:
    name: str
    passed: bool
    figures: dict[str, Any]  # what the manifest records for this output
    tolerance: dict[str, Any]
    problem: str = ""  # for a failed output: what differs, in words

    def to_dict(self) -> dict[str, Any]:
        return {**self.figures, "passed": self.passed}


@dataclass
class ParityReport:
    sample: Sample
    outputs: list[OutputParity] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    def failures(self) -> list[OutputParity]:
        return [o for o in self.outputs if not o.passed]

    def to_manifest(self) -> dict[str, Any]:
        return {
            "rows": self.sample.rows,
            "sample": self.sample.source,
            "tolerance": {o.name: o.tolerance for o in self.outputs},
            "outputs": {o.name: o.to_dict() for o in self.outputs},
            "passed": self.passed,
        }


def compare(
    original: LoadedModel, converted: LoadedModel, sample: Sample, *, classification: bool
) -> ParityReport:
    """Run both models on the sample and compare every output the original gives."""
    X = sample.X
    proba = _proba(original, X)
    expected, got = np.asarray(original.predict(X)), np.asarray(converted.predict(X))
    report = ParityReport(sample)
    if classification:
        report.outputs.append(_labels(expected, got, proba))
    else:
        a = _floats(expected)
        finite = np.abs(a[np.isfinite(a)])
        scale = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        atol = REGRESSION_ATOL_SCALE * scale
        report.outputs.append(_values("predict", a, _floats(got), atol, REGRESSION_RTOL))
    if proba is not None:
        other = _proba(converted, X)
        if other is None:
            report.outputs.append(_missing("probabilities"))
        else:
            report.outputs.append(_values("probabilities", proba, other, PROBA_ATOL, 0.0))
    return report


def _proba(model: LoadedModel, X: np.ndarray) -> np.ndarray | None:
    if not has_predict_proba(model):
        return None
    return np.asarray(model.predict_proba(X), dtype=np.float64)  # type: ignore[attr-defined]


def _floats(values: np.ndarray) -> np.ndarray:
    out = values.astype(np.float64)
    return out[:, 0] if out.ndim == 2 and out.shape[1] == 1 else out


def _values(name: str, a: np.ndarray, b: np.ndarray, atol: float, rtol: float) -> OutputParity:
    tolerance = {"atol": atol, "rtol": rtol}
    if a.shape != b.shape:
        figures: dict[str, Any] = {"shape": list(a.shape), "converted_shape": list(b.shape)}
        problem = f"shape {list(b.shape)} instead of {list(a.shape)}"
        return OutputParity(name, False, figures, tolerance, problem)
    both_nan = np.isnan(a) & np.isnan(b)
    diff = np.where(both_nan, 0.0, np.abs(a - b))
    diff = np.where(np.isnan(diff), np.inf, diff)  # NaN on one side only
    over = diff > atol + rtol * np.abs(np.nan_to_num(a))
    rows_over = int(over.reshape(len(a), -1).any(axis=1).sum()) if len(a) else 0
    max_diff = float(diff.max()) if diff.size else 0.0
    figures = {"max_abs_diff": max_diff, "rows_over_tolerance": rows_over}
    problem = ""
    if rows_over:
        problem = (
            f"differs by up to {max_diff:.3g} (tolerance atol {atol:.3g}, rtol {rtol:.3g}) "
            f"on {rows_over} of {len(a)} rows"
        )
    return OutputParity(name, not rows_over, figures, tolerance, problem)


def _labels(expected: np.ndarray, got: np.ndarray, proba: np.ndarray | None) -> OutputParity:
    tolerance: dict[str, Any] = {"exact": True, "tie_atol": PROBA_ATOL if proba is not None else 0}
    if expected.shape[:1] != got.shape[:1]:
        problem = f"{got.shape[0]} labels for {expected.shape[0]} rows"
        figures = {"rows": int(expected.shape[0]), "converted_rows": int(got.shape[0])}
        return OutputParity("predict", False, figures, tolerance, problem)
    mismatched = ~_same_labels(expected.reshape(len(expected)), got.reshape(len(got)))
    ties = np.zeros_like(mismatched)
    if proba is not None and proba.ndim == 2 and proba.shape[1] >= 2:
        top_two = np.sort(proba, axis=1)[:, -2:]
        ties = mismatched & (top_two[:, 1] - top_two[:, 0] <= PROBA_ATOL)
    bad = int((mismatched & ~ties).sum())
    figures = {
        "mismatched_rows": int(mismatched.sum()),
        "tied_rows": int(ties.sum()),
        "rows_over_tolerance": bad,
    }
    problem = f"gives a different label on {bad} of {len(expected)} rows" if bad else ""
    return OutputParity("predict", not bad, figures, tolerance, problem)


def _same_labels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "biuf" and b.dtype.kind in "biuf":
        return np.asarray(a.astype(np.float64) == b.astype(np.float64))
    return np.asarray(a.astype(str) == b.astype(str))


def _missing(name: str) -> OutputParity:
    return OutputParity(name, False, {"missing": True}, {}, "is missing from the converted model")
