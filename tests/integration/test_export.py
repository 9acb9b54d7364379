"""`cloche export` through the SDK on a real store: every convertible framework and the refusals
(bundles installed into fresh environments: test_export_bundles.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cloche
from cloche.errors import (
    ConversionFailed,
    ExportOutputExists,
    InvalidInput,
    ModelNotFound,
    ParityFailed,
    VersionNotFound,
)
from cloche.export import convert, parity
from cloche.export.manifest import BUNDLE_FORMAT, MANIFEST, file_entry
from cloche.runtimes import get_runtime, has_predict_proba
from tests.integration._export_cases import CASES, Case, cases, data, save_sklearn, sdk, upload_case

__all__ = ["cases", "data", "sdk"]  # fixtures, imported for pytest

CUSTOM_MODEL = """
class Sign:
    def predict(self, X):
        return [int(row[0] > 0) for row in X]


def load(path):
    return Sign()
"""


@pytest.mark.parametrize("name", list(CASES))
def test_each_framework_converts_checks_parity_and_serves_the_same_outputs(
    name: str, cases: dict[str, Case], sdk: cloche.Client, tmp_path: Path
) -> None:
    found = cases[name]
    ref = upload_case(sdk, name, found)
    result = sdk.models.export(ref, tmp_path / "bundle")

    manifest = json.loads((tmp_path / "bundle" / MANIFEST).read_text())
    assert manifest == result.manifest
    assert manifest["bundle_format"] == BUNDLE_FORMAT and manifest["runtime"] == "onnx"
    assert manifest["model"]["framework"] == found.framework
    assert manifest["model"]["sha256"] == sdk.models.show(ref).sha256
    check = manifest["parity"]
    assert check["passed"] is True
    assert check["sample"] == ("generated" if found.baseline is None else "baseline")
    assert check["rows"] == (1000 if found.baseline is None else 400)
    expected_outputs = {"predict", "probabilities"} if found.classifier else {"predict"}
    assert set(check["outputs"]) == expected_outputs == set(check["tolerance"])
    if found.classifier:
        assert check["outputs"]["predict"]["rows_over_tolerance"] == 0
        assert check["outputs"]["probabilities"]["max_abs_diff"] < parity.PROBA_ATOL
    else:
        assert check["outputs"]["predict"]["max_abs_diff"] <= check["tolerance"]["predict"]["atol"]
    # Served by cloche's own ONNX runtime, it answers what the original answers.
    edge = get_runtime(manifest["runtime"]).load(tmp_path / "bundle" / "model")
    original = sdk.models.load(ref)
    if found.classifier:
        np.testing.assert_array_equal(edge.predict(found.rows), original.predict(found.rows))
        assert has_predict_proba(edge)
        np.testing.assert_allclose(
            edge.predict_proba(found.rows), original.predict_proba(found.rows), atol=1e-4
        )
    else:
        assert not has_predict_proba(edge)
        np.testing.assert_allclose(
            edge.predict(found.rows), original.predict(found.rows), rtol=1e-4, atol=1e-3
        )


def test_a_bundle_holds_what_its_manifest_lists_and_says_how_to_serve(
    cases: dict[str, Case], sdk: cloche.Client, tmp_path: Path
) -> None:
    ref = upload_case(sdk, "churn", cases["logistic_regression"])
    out = tmp_path / "edge"
    result = sdk.models.export(ref, out)

    on_disk = {
        p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != MANIFEST
    }
    assert set(result.files) == on_disk == {
        "model/model.onnx", "requirements.txt", "Dockerfile", ".dockerignore", "README.md",
        f"wheels/cloche-{cloche.__version__}-py3-none-any.whl",  # no index holds cloche
    }  # fmt: skip
    for rel, entry in result.files.items():
        assert entry == file_entry(out / rel)
    requirements = (out / "requirements.txt").read_text().splitlines()
    pins = [line for line in requirements if line and not line.startswith("#")]
    assert pins == result.manifest["requirements"]["packages"]
    assert f"cloche=={cloche.__version__}" in pins
    names = {line.split("==")[0] for line in pins}
    assert {"onnxruntime", "numpy", "uvicorn", "orjson"} <= names
    assert not names & {"onnx", "scikit-learn", "scipy", "sympy", "flatbuffers", "pip"}
    assert result.commands == [
        "python3 -m venv .venv && .venv/bin/pip install --find-links wheels --no-deps "
        "-r requirements.txt",
        ".venv/bin/cloche serve .",
    ]
    readme = (out / "README.md").read_text()
    for text in (*result.commands, "/v1/models/churn:predict", "/v2/models/churn/infer"):
        assert text in readme
    assert "cloche edge sync . --to" in readme and "max_abs_diff" in readme
    dockerfile = (out / "Dockerfile").read_text()
    assert "ARG BASE=python:3.11-slim" in dockerfile and "ENV PYTHONPATH=/opt/cloche" in dockerfile
    assert 'CMD ["python3", "-m", "cloche", "serve", "/bundle"' in dockerfile
    assert not list(tmp_path.glob(".edge.*"))  # the staging folder is gone


def test_format_onnx_writes_one_model_file_and_its_manifest(
    cases: dict[str, Case], sdk: cloche.Client, tmp_path: Path
) -> None:
    found = cases["xgboost_classifier"]
    ref = upload_case(sdk, "fraud", found)
    result = sdk.models.export(ref, tmp_path / "onnx", format="onnx")

    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == [MANIFEST, "model.onnx"]
    assert list(result.files) == ["model.onnx"] and result.commands == []
    assert result.manifest["parity"]["passed"] is True
    model = get_runtime("onnx").load(tmp_path / "onnx")
    np.testing.assert_array_equal(
        model.predict(found.rows), sdk.models.load(ref).predict(found.rows)
    )


def test_a_registered_onnx_model_is_bundled_as_it_is_with_the_onnx_package(
    data: Any, sdk: cloche.Client, tmp_path: Path
) -> None:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    frame, labels, _ = data
    X = frame.to_numpy().astype(np.float32)
    proto = to_onnx(LogisticRegression(max_iter=1000).fit(X, labels), X[:1])
    (tmp_path / "model.onnx").write_bytes(proto.SerializeToString())
    ref = sdk.models.upload(tmp_path / "model.onnx", name="onnx-churn", framework="onnx").ref

    result = sdk.models.export(ref, tmp_path / "edge")
    assert result.runtime == "onnx" and result.parity is None
    bundled = tmp_path / "edge" / "model" / "model.onnx"
    assert bundled.read_bytes() == (tmp_path / "model.onnx").read_bytes()
    # Its class labels live in the graph only, which the runtime reads with the onnx package.
    assert any(p.startswith("onnx==") for p in result.manifest["requirements"]["packages"])


def test_a_custom_model_is_refused_with_a_hint_then_exports_natively(
    sdk: cloche.Client, tmp_path: Path
) -> None:
    folder = tmp_path / "sign"
    folder.mkdir()
    (folder / "model.py").write_text(CUSTOM_MODEL)
    ref = sdk.models.upload(folder, name="sign", framework="custom").ref

    with pytest.raises(ConversionFailed) as refused:
        sdk.models.export(ref, tmp_path / "edge")
    assert "custom" in refused.value.message and "--native" in (refused.value.hint or "")
    assert not (tmp_path / "edge").exists()

    result = sdk.models.export(ref, tmp_path / "edge", native=True)
    assert result.runtime == "custom" and result.parity is None
    assert (tmp_path / "edge" / "model" / "model.py").read_text() == CUSTOM_MODEL
    assert result.manifest["parity"] is None
    model = get_runtime("custom").load(tmp_path / "edge" / "model")
    assert list(model.predict([[1.0], [-1.0]])) == [1, 0]


def test_a_custom_models_imports_are_pinned_and_one_not_installed_is_named(
    sdk: cloche.Client, tmp_path: Path
) -> None:
    folder = tmp_path / "sign"
    folder.mkdir()
    (folder / "model.py").write_text(
        "import scipy.special\n"
        "try:\n    import surely_not_installed_xyz\nexcept ImportError:\n    pass\n" + CUSTOM_MODEL
    )
    ref = sdk.models.upload(folder, name="sign", framework="custom").ref
    result = sdk.models.export(ref, tmp_path / "edge", native=True)
    requirements = result.manifest["requirements"]
    assert any(p.startswith("scipy==") for p in requirements["packages"])
    assert requirements["unpinned_imports"] == ["surely_not_installed_xyz"]
    readme = (tmp_path / "edge" / "README.md").read_text()
    assert "`surely_not_installed_xyz`, which was not installed where it was exported" in readme


def test_an_estimator_skl2onnx_cannot_convert_is_refused_and_exports_natively(
    data: Any, sdk: cloche.Client, tmp_path: Path
) -> None:
    from sklearn.semi_supervised import LabelSpreading

    frame, labels, _ = data
    path = save_sklearn(tmp_path, LabelSpreading().fit(frame.to_numpy(), labels))
    ref = sdk.models.upload(path, name="spread").ref

    with pytest.raises(ConversionFailed) as refused:
        sdk.models.export(ref, tmp_path / "edge")
    assert "LabelSpreading" in refused.value.message
    assert refused.value.hint == convert.NATIVE_HINT

    result = sdk.models.export(ref, tmp_path / "edge", native=True)
    assert result.runtime == "sklearn" and set(result.files) >= {"model/model.joblib"}
    assert "scikit-learn==" in (tmp_path / "edge" / "requirements.txt").read_text()


def test_parity_beyond_the_tolerance_refuses_naming_the_output_and_the_difference(
    cases: dict[str, Case], sdk: cloche.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = upload_case(sdk, "churn", cases["logistic_regression"])
    monkeypatch.setattr(parity, "PROBA_ATOL", 0.0)  # float32 rounding now counts as a difference

    with pytest.raises(ParityFailed) as refused:
        sdk.models.export(ref, tmp_path / "edge")
    error = refused.value
    assert (
        "probabilities differs by up to" in error.message and "400 baseline rows" in error.message
    )
    assert error.details["outputs"]["probabilities"]["max_abs_diff"] > 0
    assert "--native" in (error.hint or "")
    assert not (tmp_path / "edge").exists() and not list(tmp_path.glob(".edge.*"))


def test_a_converted_model_that_predicts_differently_is_refused(
    data: Any,
    cases: dict[str, Case],
    sdk: cloche.Client,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    frame, labels, _ = data
    ref = upload_case(sdk, "churn", cases["logistic_regression"])
    # A "conversion" that is really another model: labels shuffled before fitting.
    other = LogisticRegression(max_iter=1000).fit(frame.to_numpy(), np.roll(labels, 7))
    wrong = to_onnx(other, frame.to_numpy()[:1].astype(np.float32), options={"zipmap": False})
    monkeypatch.setattr(convert, "to_onnx", lambda *a, **k: wrong)

    with pytest.raises(ParityFailed) as refused:
        sdk.models.export(ref, tmp_path / "edge")
    assert "predict gives a different label on" in refused.value.message
    assert refused.value.details["outputs"]["predict"]["rows_over_tolerance"] > 0
    result = sdk.models.export(ref, tmp_path / "edge", native=True)
    assert result.runtime == "sklearn"


def test_an_existing_folder_is_replaced_only_with_overwrite_and_only_if_it_is_an_export(
    cases: dict[str, Case], sdk: cloche.Client, tmp_path: Path
) -> None:
    ref = upload_case(sdk, "churn", cases["logistic_regression"])
    out = tmp_path / "edge"
    out.mkdir()
    (out / "notes.txt").write_text("mine")

    with pytest.raises(ExportOutputExists) as exists:
        sdk.models.export(ref, out)
    assert "--overwrite" in (exists.value.hint or "")
    with pytest.raises(ExportOutputExists, match=r"no manifest\.json"):
        sdk.models.export(ref, out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"

    (out / "notes.txt").unlink()  # an empty folder is fine without --overwrite
    sdk.models.export(ref, out)
    result = sdk.models.export(ref, out, overwrite=True, native=True)
    assert result.runtime == "sklearn" and not (out / "model" / "model.onnx").exists()


def test_unknown_models_and_bad_options_are_refused(
    cases: dict[str, Case], sdk: cloche.Client, tmp_path: Path
) -> None:
    with pytest.raises(ModelNotFound):
        sdk.models.export("nope", tmp_path / "a")
    ref = upload_case(sdk, "churn", cases["logistic_regression"])
    with pytest.raises(VersionNotFound):
        sdk.models.export("churn:9", tmp_path / "a")
    with pytest.raises(InvalidInput, match="--native"):
        sdk.models.export(ref, tmp_path / "a", format="onnx", native=True)
    with pytest.raises(InvalidInput, match="unknown platform"):
        sdk.models.export(ref, tmp_path / "a", platform="windows_arm")
    with pytest.raises(InvalidInput, match="unknown export format"):
        sdk.models.export(ref, tmp_path / "a", format="tar")
    with pytest.raises(InvalidInput, match="--no-slim") as refused:
        sdk.models.export(ref, tmp_path / "a", slim=False)
    assert refused.value.hint == "add --with-wheels, or drop --no-slim"
    assert not (tmp_path / "a").exists()


def test_over_http_export_says_to_run_beside_the_store(
    cases: dict[str, Case], sdk: cloche.Client, live_server: Any, tmp_path: Path
) -> None:
    ref = upload_case(sdk, "churn", cases["logistic_regression"])
    with cloche.Client(live_server.url) as remote, pytest.raises(InvalidInput) as refused:
        remote.models.export(ref, tmp_path / "edge")
    assert "CLOCHE_URL" in (refused.value.hint or "")
    assert not (tmp_path / "edge").exists()
