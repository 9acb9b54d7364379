"""Conversion to ONNX of models as cloche's runtimes load them, served back through the ONNX
runtime with the same outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

from cloche.errors import ConversionFailed
from cloche.export import convert
from cloche.runtimes import get_runtime, has_predict_proba
from cloche.runtimes.onnx import CLASSES_METADATA

rng = np.random.default_rng(1)
X = rng.normal(size=(300, 5))
LABELS = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
TARGET = 4.0 * X[:, 2] - X[:, 3]


def _loaded(framework: str, folder: Path) -> Any:
    return get_runtime(framework).load(folder)


def _served(model: Any, framework: str, folder: Path) -> Any:
    """Convert ``model`` and load the result through cloche's ONNX runtime."""
    proto = convert.to_onnx(model, model.signature(), framework=framework, ref="m:1")
    out = folder / "onnx"
    out.mkdir()
    (out / "model.onnx").write_bytes(proto.SerializeToString())
    return get_runtime("onnx").load(out)


def test_class_labels_are_written_into_the_metadata_for_runtimes_without_onnx(
    tmp_path: Path,
) -> None:
    from sklearn.linear_model import LogisticRegression

    joblib.dump(LogisticRegression().fit(X, np.where(LABELS == 1, "yes", "no")), tmp_path / "m.pkl")
    original = _loaded("sklearn", tmp_path)
    proto = convert.to_onnx(original, original.signature(), framework="sklearn", ref="m:1")
    metadata = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(metadata[CLASSES_METADATA]) == ["no", "yes"]


def test_a_classifier_without_probabilities_converts_to_labels_only(tmp_path: Path) -> None:
    from sklearn.svm import SVC

    joblib.dump(SVC().fit(X, LABELS), tmp_path / "svc.joblib")
    original = _loaded("sklearn", tmp_path)
    served = _served(original, "sklearn", tmp_path)
    # The SVC's decision scores are not probabilities: the converted model must not offer them.
    assert not has_predict_proba(original) and not has_predict_proba(served)
    assert len(served.session.get_outputs()) == 1
    np.testing.assert_array_equal(served.predict(X), original.predict(X))


def test_xgboost_converts_only_the_trees_up_to_the_best_iteration(tmp_path: Path) -> None:
    import xgboost as xgb

    model = xgb.XGBRegressor(n_estimators=60, max_depth=3, early_stopping_rounds=2)
    model.fit(X[:200], TARGET[:200], eval_set=[(X[200:], TARGET[200:])], verbose=False)
    assert model.get_booster().num_boosted_rounds() > model.best_iteration + 1
    model.save_model(tmp_path / "model.json")
    original = _loaded("xgboost", tmp_path)
    served = _served(original, "xgboost", tmp_path)
    np.testing.assert_allclose(served.predict(X), original.predict(X), rtol=1e-5, atol=1e-4)


def test_lightgbm_regressor_converts(tmp_path: Path) -> None:
    import lightgbm as lgb

    booster = lgb.LGBMRegressor(n_estimators=20, verbose=-1).fit(X, TARGET).booster_
    booster.save_model(str(tmp_path / "model.txt"))
    original = _loaded("lightgbm", tmp_path)
    served = _served(original, "lightgbm", tmp_path)
    assert not has_predict_proba(served) and served.classes is None
    np.testing.assert_allclose(served.predict(X), original.predict(X), rtol=1e-5, atol=1e-4)


def test_frameworks_without_a_converter_are_refused_with_the_native_hint() -> None:
    for framework in ("torch", "custom"):
        with pytest.raises(ConversionFailed) as refused:
            convert.to_onnx(object(), None, framework=framework, ref="m:1")  # type: ignore[arg-type]
        assert framework in refused.value.message
        assert refused.value.hint == "pass --native to bundle the model in its own framework"


def test_the_target_opset_is_one_the_installed_onnxruntime_runs() -> None:
    import onnx

    assert 15 <= convert.ort_max_opset() <= onnx.defs.onnx_opset_version()
