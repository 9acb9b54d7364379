"""The pinned closure of a bundle's runtime, computed from the installed distributions."""

from __future__ import annotations

import importlib.metadata as metadata

import pytest

from cloche.errors import InvalidInput, MissingDependency
from cloche.export import requirements
from cloche.export.requirements import EDGE_BASE, Pin, canonical, closure, requirement_lines


def _names(pins: list[Pin]) -> set[str]:
    return {p.key for p in pins}


def test_the_onnx_closure_pins_installed_versions_and_leaves_out_onnxruntime_tooling() -> None:
    pins = closure("onnx")
    names = _names(pins)
    assert {canonical(n) for n in EDGE_BASE} | {"onnxruntime"} <= names
    # onnxruntime's declared tooling dependencies are not needed by InferenceSession, and the
    # onnx package is not needed for a model whose class labels the exporter wrote down.
    assert not names & {"flatbuffers", "sympy", "mpmath", "coloredlogs", "packaging", "protobuf"}
    assert "onnx" not in names
    # A registered ONNX model's labels are read from its graph, with onnx (and its protobuf).
    assert {"onnx", "protobuf"} <= _names(closure("onnx", extra_modules=("onnx",)))
    assert not names & {"scikit-learn", "scipy", "xgboost", "lightgbm", "pip", "setuptools"}
    for pin in pins:
        assert pin.version == metadata.version(pin.name)
    assert [p.key for p in pins] == sorted(p.key for p in pins)


def test_native_closures_hold_the_framework_and_its_dependencies() -> None:
    sklearn = _names(closure("sklearn"))
    assert {"scikit-learn", "scipy", "joblib", "threadpoolctl", "pandas"} <= sklearn
    assert "onnxruntime" not in sklearn
    # xgboost is whichever distribution installed the module here (xgboost-cpu on this machine).
    xgb = _names(closure("xgboost"))
    assert xgb & {"xgboost", "xgboost-cpu"} and "scipy" in xgb
    assert "lightgbm" in _names(closure("lightgbm"))
    assert _names(closure("custom")) == {canonical(n) for n in EDGE_BASE} | {"h11", "click"}


def test_markers_are_evaluated_for_the_target_python_and_extras_are_ignored() -> None:
    # uvicorn needs typing-extensions only below Python 3.11, and httptools only as an extra.
    assert "typing-extensions" in _names(closure("custom", python_version="3.10"))
    assert "typing-extensions" not in _names(closure("custom", python_version="3.12"))
    assert "python-dotenv" not in _names(closure("custom"))  # uvicorn[standard] only


def test_bad_targets_and_missing_frameworks_are_clear_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(InvalidInput, match="unknown platform"):
        closure("onnx", platform="win_amd64")
    with pytest.raises(InvalidInput, match="invalid Python version"):
        closure("onnx", python_version="eleven")
    monkeypatch.setitem(requirements.RUNTIME_MODULES, "onnx", ("not_a_module_anywhere",))
    with pytest.raises(MissingDependency, match="not_a_module_anywhere"):
        closure("onnx")


def test_requirement_lines_carry_hashes_when_wheels_are_known() -> None:
    pins = [Pin("scikit-learn", "1.5.0"), Pin("numpy", "2.0.0")]
    assert requirement_lines(pins) == ["scikit-learn==1.5.0", "numpy==2.0.0"]
    assert requirement_lines(pins, {"scikit-learn": "ab" * 32}) == [
        f"scikit-learn==1.5.0 --hash=sha256:{'ab' * 32}",
        "numpy==2.0.0",
    ]
