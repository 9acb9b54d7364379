"""The pinned closure of a bundle's runtime, computed from the installed distributions."""

from __future__ import annotations

import importlib.metadata as metadata
from pathlib import Path

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
    custom = _names(closure("custom"))
    assert {canonical(n) for n in EDGE_BASE} <= custom
    assert not custom & {"scikit-learn", "onnxruntime", "xgboost", "lightgbm", "torch", "pandas"}


def _distribution(tmp_path: Path, requires: list[str]) -> metadata.Distribution:
    """A distribution declaring ``requires``: markers are tested on metadata written here, not
    on what one release of a real package happens to declare."""
    info = tmp_path / "demo-1.0.dist-info"
    info.mkdir()
    lines = ["Metadata-Version: 2.1", "Name: demo", "Version: 1.0"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n")
    return metadata.PathDistribution(info)


def test_markers_are_evaluated_for_the_target_python_and_extras_are_ignored(
    tmp_path: Path,
) -> None:
    dist = _distribution(
        tmp_path,
        [
            "always",
            'old-only; python_version < "3.11"',
            'arm-only; platform_machine == "aarch64"',
            'fast-only; extra == "fast"',
            "not a valid requirement ((",
        ],
    )
    deps = requirements._dependencies
    env_310 = requirements.marker_environment("3.10", "manylinux_x86_64")
    env_312_arm = requirements.marker_environment("3.12", "manylinux_aarch64")
    env_312_x86 = requirements.marker_environment("3.12", "manylinux_x86_64")
    assert deps(dist, env_310) == ["always", "old-only"]
    assert deps(dist, env_312_arm) == ["always", "arm-only"]
    assert deps(dist, env_312_x86) == ["always"]


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
