from __future__ import annotations

import re

import lightgbm as lgb
import numpy as np
import pytest

from cloche.errors import CorruptArtifact
from cloche.runtimes import get_runtime, has_predict_proba
from cloche.signatures import FieldSpec

SMALL = {"n_estimators": 10, "num_leaves": 7, "min_child_samples": 5, "verbose": -1}


@pytest.mark.parametrize("suffix", [".txt", ".lgb", ".model"])
@pytest.mark.parametrize("target", ["y_binary", "y_multi"])
def test_classifier_predictions_match_lightgbm(suffix, target, tabular, artifact_dir):
    y = getattr(tabular, target)
    fitted = lgb.LGBMClassifier(**SMALL).fit(tabular.X, y)
    fitted.booster_.save_model(artifact_dir / f"model{suffix}")
    model = get_runtime("lightgbm").load(artifact_dir)

    assert model.framework == "lightgbm"
    np.testing.assert_array_equal(model.predict(tabular.X), fitted.predict(tabular.X))
    np.testing.assert_allclose(model.predict_proba(tabular.X), fitted.predict_proba(tabular.X))


def test_regressor_predictions_match_lightgbm(tabular, artifact_dir):
    fitted = lgb.LGBMRegressor(**SMALL).fit(tabular.X, tabular.y_reg)
    fitted.booster_.save_model(artifact_dir / "model.txt")
    model = get_runtime("lightgbm").load(artifact_dir)

    np.testing.assert_allclose(model.predict(tabular.X), fitted.predict(tabular.X))
    assert not has_predict_proba(model)


def test_named_features_are_the_signature_and_order_dataframe_columns(tabular, artifact_dir):
    fitted = lgb.LGBMClassifier(**SMALL).fit(tabular.frame, tabular.y_multi)
    fitted.booster_.save_model(artifact_dir / "model.txt")
    model = get_runtime("lightgbm").load(artifact_dir)
    sig = model.signature()

    assert sig.input_kind == "tabular"
    assert sig.inputs == tuple(FieldSpec(n, "float64") for n in tabular.frame.columns)
    assert sig.task == "classification"
    assert sig.classes == (0, 1, 2)
    assert sig.outputs == (
        FieldSpec("predict", "int64", (-1,)),
        FieldSpec("probabilities", "float64", (-1, 3)),
    )
    assert sig.source == ("model",)
    expected = fitted.predict_proba(tabular.frame)
    reordered = tabular.frame[list(reversed(tabular.frame.columns))]
    np.testing.assert_allclose(model.predict_proba(reordered), expected)
    np.testing.assert_allclose(model.predict_proba(tabular.X), expected)


def test_unnamed_regressor_signature_is_a_tensor_of_known_width(tabular, artifact_dir):
    lgb.LGBMRegressor(**SMALL).fit(tabular.X, tabular.y_reg).booster_.save_model(
        artifact_dir / "model.txt"
    )
    sig = get_runtime("lightgbm").load(artifact_dir).signature()

    # LightGBM's invented Column_0.. names are not feature names.
    assert sig.input_kind == "tensor"
    assert sig.inputs == (FieldSpec("input", "float64", (-1, 4)),)
    assert sig.task == "regression"
    assert sig.classes is None


def test_model_under_any_name_loads_when_it_is_the_folders_only_file(tabular, artifact_dir):
    fitted = lgb.LGBMRegressor(**SMALL).fit(tabular.X, tabular.y_reg)
    fitted.booster_.save_model(artifact_dir / "churn-model")
    model = get_runtime("lightgbm").load(artifact_dir)

    np.testing.assert_allclose(model.predict(tabular.X), fitted.predict(tabular.X))


# LightGBM's parser aborts or segfaults the whole process on most of these cuts.
@pytest.mark.parametrize("fraction", [0.02, 0.1, 0.4, 0.75, 0.85, 0.95, 0.999])
def test_truncated_model_raises_instead_of_crashing(fraction, tabular, artifact_dir, truncate):
    fitted = lgb.LGBMClassifier(**SMALL).fit(tabular.X, tabular.y_multi)
    fitted.booster_.save_model(artifact_dir / "churn.txt")
    truncate(artifact_dir / "churn.txt", fraction)

    with pytest.raises(CorruptArtifact, match=r"churn\.txt is not a LightGBM text model"):
        get_runtime("lightgbm").load(artifact_dir)


def test_tree_sizes_that_do_not_match_the_trees_are_refused(tabular, artifact_dir):
    fitted = lgb.LGBMRegressor(**SMALL).fit(tabular.X, tabular.y_reg)
    text = fitted.booster_.model_to_string()
    text = re.sub(r"tree_sizes=(\d+)", lambda m: f"tree_sizes={int(m[1]) + 3}", text)
    (artifact_dir / "model.txt").write_text(text)

    with pytest.raises(CorruptArtifact, match="tree_sizes"):
        get_runtime("lightgbm").load(artifact_dir)


def test_xgboost_json_is_not_a_lightgbm_model(artifact_dir):
    (artifact_dir / "model.txt").write_text('{"learner": {}}')

    with pytest.raises(CorruptArtifact, match=r"model\.txt is not a LightGBM text model"):
        get_runtime("lightgbm").load(artifact_dir)
