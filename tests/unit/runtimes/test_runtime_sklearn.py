from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC

from cloche.errors import CorruptArtifact, MissingDependency
from cloche.runtimes import get_runtime, has_predict_proba
from cloche.runtimes.base import LoadedModel
from cloche.signatures import FieldSpec, Signature

CLASSIFIERS = [
    LogisticRegression(max_iter=500),
    RandomForestClassifier(n_estimators=8, random_state=0),
]
REGRESSORS = [Ridge(), GradientBoostingRegressor(n_estimators=10, random_state=0)]


def _save_and_load(estimator: Any, folder: Path, name: str = "model.joblib") -> LoadedModel:
    joblib.dump(estimator, folder / name)
    return get_runtime("sklearn").load(folder)


@pytest.mark.parametrize("estimator", CLASSIFIERS, ids=lambda e: type(e).__name__)
def test_classifier_predictions_match_sklearn(estimator, tabular, artifact_dir):
    fitted = clone(estimator).fit(tabular.X, tabular.y_multi)
    model = _save_and_load(fitted, artifact_dir)

    assert model.framework == "sklearn"
    np.testing.assert_array_equal(model.predict(tabular.X), fitted.predict(tabular.X))
    np.testing.assert_allclose(model.predict_proba(tabular.X), fitted.predict_proba(tabular.X))


@pytest.mark.parametrize("estimator", REGRESSORS, ids=lambda e: type(e).__name__)
def test_regressor_predictions_match_sklearn(estimator, tabular, artifact_dir):
    fitted = clone(estimator).fit(tabular.X, tabular.y_reg)
    model = _save_and_load(fitted, artifact_dir)

    np.testing.assert_allclose(model.predict(tabular.X), fitted.predict(tabular.X))
    assert not has_predict_proba(model)


def test_classifier_without_probabilities_has_no_predict_proba(tabular, artifact_dir):
    model = _save_and_load(SVC().fit(tabular.X, tabular.y_binary), artifact_dir)

    assert not has_predict_proba(model)
    assert [o.name for o in model.signature().outputs] == ["predict"]


def _churn_pipeline() -> Pipeline:
    prep = ColumnTransformer(
        [
            ("city", OneHotEncoder(handle_unknown="ignore"), ["city"]),
            ("num", StandardScaler(), ["tenure", "spend"]),
        ]
    )
    return Pipeline([("prep", prep), ("clf", LogisticRegression(max_iter=500))])


def test_pipeline_with_column_transformer_matches_sklearn_on_a_dataframe(churn, artifact_dir):
    frame, y = churn
    fitted = _churn_pipeline().fit(frame, y)
    model = _save_and_load(fitted, artifact_dir)

    np.testing.assert_array_equal(model.predict(frame), fitted.predict(frame))
    np.testing.assert_allclose(model.predict_proba(frame), fitted.predict_proba(frame))


def test_pipeline_takes_object_rows_and_reordered_columns(churn, artifact_dir):
    frame, y = churn
    fitted = _churn_pipeline().fit(frame, y)
    model = _save_and_load(fitted, artifact_dir)
    expected = fitted.predict_proba(frame)

    # Rows decoded from JSON arrive as an object array in signature order.
    np.testing.assert_allclose(model.predict_proba(frame.to_numpy(dtype=object)), expected)
    np.testing.assert_allclose(model.predict_proba(frame[["city", "spend", "tenure"]]), expected)


def test_pipeline_signature_names_columns_and_learned_categories(churn, artifact_dir):
    frame, y = churn
    sig = _save_and_load(_churn_pipeline().fit(frame, y), artifact_dir).signature()

    assert sig.input_kind == "tabular"
    assert sig.inputs == (
        FieldSpec("tenure", "float64"),
        FieldSpec("spend", "float64"),
        FieldSpec("city", "string", categories=("lyon", "nice", "paris")),
    )
    assert sig.task == "classification"
    assert sig.classes == (0, 1)


def test_signature_of_a_classifier_fitted_on_a_dataframe(tabular, artifact_dir):
    fitted = LogisticRegression(max_iter=500).fit(tabular.frame, tabular.y_multi)
    sig = _save_and_load(fitted, artifact_dir).signature()

    assert sig.feature_names == list(tabular.frame.columns)
    assert {f.dtype for f in sig.inputs} == {"float64"}
    assert sig.task == "classification"
    assert sig.classes == (0, 1, 2)
    assert sig.outputs == (
        FieldSpec("predict", "int64", (-1,)),
        FieldSpec("probabilities", "float64", (-1, 3)),
    )
    assert sig.source == ("model",)
    assert Signature.from_dict(sig.to_dict()) == sig


def test_signature_without_feature_names_is_one_tensor_of_known_width(tabular, artifact_dir):
    sig = _save_and_load(Ridge().fit(tabular.X, tabular.y_reg), artifact_dir).signature()

    assert sig.input_kind == "tensor"
    assert sig.inputs == (FieldSpec("input", "float64", (-1, 4)),)
    assert sig.task == "regression"
    assert sig.classes is None
    assert sig.outputs == (FieldSpec("predict", "float64", (-1,)),)


def test_string_class_labels_come_back_as_labels(tabular, artifact_dir):
    labels = np.array(["no", "yes"])[tabular.y_binary]
    fitted = LogisticRegression().fit(tabular.X, labels)
    model = _save_and_load(fitted, artifact_dir)

    np.testing.assert_array_equal(model.predict(tabular.X), fitted.predict(tabular.X))
    assert model.signature().classes == ("no", "yes")
    assert model.signature().outputs[0].dtype == "string"


def test_dataframe_given_to_a_model_fitted_without_names_does_not_warn(tabular, artifact_dir):
    fitted = LogisticRegression().fit(tabular.X, tabular.y_binary)
    model = _save_and_load(fitted, artifact_dir)

    # Warnings are errors here: sklearn would warn about names it never saw.
    np.testing.assert_array_equal(model.predict(tabular.frame), fitted.predict(tabular.X))


def test_named_model_takes_a_plain_array_in_feature_order(tabular, artifact_dir):
    fitted = LogisticRegression().fit(tabular.frame, tabular.y_binary)
    model = _save_and_load(fitted, artifact_dir)

    np.testing.assert_array_equal(model.predict(tabular.X), fitted.predict(tabular.frame))


def test_plain_pickle_file_loads(tabular, artifact_dir):
    fitted = Ridge().fit(tabular.X, tabular.y_reg)
    with (artifact_dir / "model.pkl").open("wb") as fh:
        pickle.dump(fitted, fh)
    model = get_runtime("sklearn").load(artifact_dir)

    np.testing.assert_allclose(model.predict(tabular.X), fitted.predict(tabular.X))


def test_truncated_file_raises_corrupt_artifact_naming_it(tabular, artifact_dir, truncate):
    joblib.dump(Ridge().fit(tabular.X, tabular.y_reg), artifact_dir / "churn.joblib")
    truncate(artifact_dir / "churn.joblib")

    with pytest.raises(CorruptArtifact, match=r"churn\.joblib is not a scikit-learn model"):
        get_runtime("sklearn").load(artifact_dir)


def test_pickle_of_something_without_predict_is_refused(artifact_dir):
    joblib.dump({"weights": [1, 2, 3]}, artifact_dir / "model.joblib")

    with pytest.raises(CorruptArtifact, match="dict, which has no predict method"):
        get_runtime("sklearn").load(artifact_dir)


def test_pickle_needing_a_missing_module_names_it(artifact_dir):
    (artifact_dir / "model.pkl").write_bytes(b"\x80\x02cno_such_module_for_cloche\nThing\n)\x81.")

    with pytest.raises(MissingDependency, match="no_such_module_for_cloche"):
        get_runtime("sklearn").load(artifact_dir)


def test_empty_file_is_corrupt(artifact_dir):
    (artifact_dir / "model.joblib").write_bytes(b"")

    with pytest.raises(CorruptArtifact, match=r"model\.joblib is empty"):
        get_runtime("sklearn").load(artifact_dir)
