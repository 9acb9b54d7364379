from __future__ import annotations

import json

import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb

from cloche.errors import CorruptArtifact
from cloche.runtimes import get_runtime, has_predict_proba
from cloche.signatures import FieldSpec

SMALL = {"n_estimators": 10, "max_depth": 3}


@pytest.mark.parametrize("fmt", ["json", "ubj"])
@pytest.mark.parametrize("target", ["y_binary", "y_multi"])
def test_classifier_predictions_match_xgboost(fmt, target, tabular, artifact_dir):
    y = getattr(tabular, target)
    fitted = xgb.XGBClassifier(**SMALL).fit(tabular.X, y)
    fitted.save_model(artifact_dir / f"model.{fmt}")
    model = get_runtime("xgboost").load(artifact_dir)

    assert model.framework == "xgboost"
    np.testing.assert_array_equal(model.predict(tabular.X), fitted.predict(tabular.X))
    proba = model.predict_proba(tabular.X)
    assert proba.shape == (200, len(np.unique(y)))
    np.testing.assert_allclose(proba, fitted.predict_proba(tabular.X), rtol=1e-6)


@pytest.mark.parametrize("fmt", ["json", "ubj"])
def test_regressor_predictions_match_xgboost(fmt, tabular, artifact_dir):
    fitted = xgb.XGBRegressor(**SMALL).fit(tabular.X, tabular.y_reg)
    fitted.save_model(artifact_dir / f"model.{fmt}")
    model = get_runtime("xgboost").load(artifact_dir)

    np.testing.assert_allclose(model.predict(tabular.X), fitted.predict(tabular.X), rtol=1e-6)
    assert not has_predict_proba(model)


def test_pretty_printed_json_model_loads(tabular, artifact_dir):
    fitted = xgb.XGBRegressor(**SMALL).fit(tabular.X, tabular.y_reg)
    fitted.save_model(artifact_dir / "compact.json")
    compact = artifact_dir / "compact.json"
    (artifact_dir / "model.json").write_text(json.dumps(json.loads(compact.read_text()), indent=2))
    compact.unlink()
    model = get_runtime("xgboost").load(artifact_dir)

    np.testing.assert_allclose(model.predict(tabular.X), fitted.predict(tabular.X), rtol=1e-6)


def test_early_stopped_model_predicts_with_its_best_iteration(tabular, artifact_dir):
    fitted = xgb.XGBClassifier(n_estimators=200, max_depth=4, early_stopping_rounds=2)
    fitted.fit(
        tabular.X[:150],
        tabular.y_multi[:150],
        eval_set=[(tabular.X[150:], tabular.y_multi[150:])],
        verbose=False,
    )
    assert fitted.best_iteration < 199
    fitted.save_model(artifact_dir / "model.json")
    model = get_runtime("xgboost").load(artifact_dir)

    np.testing.assert_allclose(
        model.predict_proba(tabular.X), fitted.predict_proba(tabular.X), rtol=1e-6
    )


def test_native_softmax_booster_predicts_labels_without_probabilities(tabular, artifact_dir):
    params = {"objective": "multi:softmax", "num_class": 3, "max_depth": 2}
    booster = xgb.train(params, xgb.DMatrix(tabular.X, label=tabular.y_multi), num_boost_round=5)
    booster.save_model(artifact_dir / "booster.json")
    model = get_runtime("xgboost").load(artifact_dir)

    expected = booster.predict(xgb.DMatrix(tabular.X)).astype(np.int64)
    np.testing.assert_array_equal(model.predict(tabular.X), expected)
    assert not has_predict_proba(model)
    assert model.signature().task == "classification"


def test_named_features_are_the_signature_and_order_dataframe_columns(tabular, artifact_dir):
    fitted = xgb.XGBClassifier(**SMALL).fit(tabular.frame, tabular.y_multi)
    fitted.save_model(artifact_dir / "model.json")
    model = get_runtime("xgboost").load(artifact_dir)
    sig = model.signature()

    assert sig.input_kind == "tabular"
    assert sig.inputs == tuple(FieldSpec(n, "float64") for n in tabular.frame.columns)
    assert sig.task == "classification"
    assert sig.classes == (0, 1, 2)
    assert sig.outputs == (
        FieldSpec("predict", "int64", (-1,)),
        FieldSpec("probabilities", "float32", (-1, 3)),
    )
    assert sig.source == ("model",)
    expected = fitted.predict_proba(tabular.frame)
    reordered = tabular.frame[list(reversed(tabular.frame.columns))]
    np.testing.assert_allclose(model.predict_proba(reordered), expected, rtol=1e-6)
    np.testing.assert_allclose(model.predict_proba(tabular.X), expected, rtol=1e-6)


def test_unnamed_regressor_signature_is_a_tensor_of_known_width(tabular, artifact_dir):
    xgb.XGBRegressor(**SMALL).fit(tabular.X, tabular.y_reg).save_model(artifact_dir / "m.ubj")
    sig = get_runtime("xgboost").load(artifact_dir).signature()

    assert sig.input_kind == "tensor"
    assert sig.inputs == (FieldSpec("input", "float64", (-1, 4)),)
    assert sig.task == "regression"
    assert sig.classes is None


def test_object_rows_are_read_as_numbers(tabular, artifact_dir):
    fitted = xgb.XGBRegressor(**SMALL).fit(tabular.X, tabular.y_reg)
    fitted.save_model(artifact_dir / "model.json")
    model = get_runtime("xgboost").load(artifact_dir)

    rows = tabular.X.astype(object)
    np.testing.assert_allclose(model.predict(rows), fitted.predict(tabular.X), rtol=1e-6)


@pytest.mark.parametrize("fmt", ["json", "ubj"])
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.99])
def test_truncated_model_raises_corrupt_artifact_naming_it(
    fmt, fraction, tabular, artifact_dir, truncate
):
    xgb.XGBClassifier(**SMALL).fit(tabular.X, tabular.y_multi).save_model(
        artifact_dir / f"churn.{fmt}"
    )
    truncate(artifact_dir / f"churn.{fmt}", fraction)

    with pytest.raises(CorruptArtifact, match=rf"churn\.{fmt} is not an XGBoost model"):
        get_runtime("xgboost").load(artifact_dir)


def test_a_lightgbm_file_named_json_is_not_an_xgboost_model(tabular, artifact_dir):
    booster = lgb.train({"verbose": -1}, lgb.Dataset(tabular.X, tabular.y_reg), num_boost_round=2)
    booster.save_model(artifact_dir / "model.json")

    with pytest.raises(CorruptArtifact, match=r"model\.json is not an XGBoost model: .+"):
        get_runtime("xgboost").load(artifact_dir)
