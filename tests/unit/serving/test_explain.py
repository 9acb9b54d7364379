"""Attributions for :explain: TreeSHAP from the runtimes, sampled Shapley values for the rest."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import lightgbm as lgb
import numpy as np
import orjson
import pytest
import xgboost as xgb
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression

from cloche.errors import InvalidInput
from cloche.runtimes import get_runtime
from cloche.runtimes.base import has_explain
from cloche.runtimes.custom import CustomModel
from cloche.runtimes.sklearn import SklearnClassifier, SklearnModel
from cloche.serving.explain import explain
from cloche.serving.inputs import InputSpec
from cloche.serving.protocols.v1 import decode_explain_v1
from cloche.signatures import FieldSpec, Signature

NAMES = ["tenure", "spend", "visits", "age", "plan", "region"]
RNG = np.random.default_rng(5)
X = RNG.normal(size=(200, 6))
SCORE = X[:, 0] + 0.5 * X[:, 1] - 0.8 * X[:, 2] * X[:, 3]
TARGETS = {
    "binary": (SCORE > 0).astype(np.int64),
    "multi": np.digitize(SCORE, [-0.5, 0.5]).astype(np.int64),
    "regression": SCORE + RNG.normal(scale=0.1, size=200),
}
BG, ROWS = X[:100], X[150:158]  # at most 100 background rows are used as given


def exact_shapley(f, x: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Shapley values by their definition: every coalition, with v(S) = mean f over bg."""
    d = len(x)

    def v(S: tuple[int, ...]) -> float:
        Z = bg.copy()
        Z[:, list(S)] = x[list(S)]
        return float(np.mean(f(Z)))

    phi = np.zeros(d)
    for j in range(d):
        others = [i for i in range(d) if i != j]
        for r in range(d):
            weight = math.factorial(r) * math.factorial(d - r - 1) / math.factorial(d)
            for S in itertools.combinations(others, r):
                phi[j] += weight * (v((*S, j)) - v(S))
    return phi


def _xgb(target: str, folder: Path):
    est = xgb.XGBRegressor if target == "regression" else xgb.XGBClassifier
    booster = est(n_estimators=10, max_depth=3, n_jobs=1).fit(X, TARGETS[target]).get_booster()
    booster.save_model(folder / "model.json")
    margin = booster.predict(xgb.DMatrix(X), output_margin=True)
    return get_runtime("xgboost").load(folder), margin


def _lgb(target: str, folder: Path):
    est = lgb.LGBMRegressor if target == "regression" else lgb.LGBMClassifier
    params = {
        "n_estimators": 10,
        "num_leaves": 7,
        "min_child_samples": 5,
        "verbose": -1,
        "n_jobs": 1,
    }
    booster = est(**params).fit(X, TARGETS[target]).booster_
    booster.save_model(folder / "model.txt")
    return get_runtime("lightgbm").load(folder), booster.predict(X, raw_score=True)


@pytest.mark.parametrize("build", [_xgb, _lgb], ids=["xgboost", "lightgbm"])
@pytest.mark.parametrize("target", ["binary", "multi", "regression"])
def test_native_contributions_sum_to_the_raw_margin(build, target, tmp_path):
    model, margin = build(target, tmp_path)
    contribs = model.explain(X)

    assert has_explain(model)
    shape = (200, 3, 7) if target == "multi" else (200, 7)  # the last column is the bias
    assert contribs.shape == shape
    np.testing.assert_allclose(contribs.sum(axis=-1), margin, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("build", [_xgb, _lgb], ids=["xgboost", "lightgbm"])
def test_native_explanation_explains_the_predicted_class(build, tmp_path):
    model, margin = build("multi", tmp_path)
    result = explain(model, ROWS, background=None, feature_names=NAMES, classes=["lo", "mid", "hi"])

    predicted = model.predict(ROWS)
    assert result.method == "native"
    assert result.classes == [["lo", "mid", "hi"][k] for k in predicted]
    chosen = margin[150:158][np.arange(8), predicted]
    np.testing.assert_allclose(result.attributions.sum(1) + result.base_value, chosen, rtol=1e-5)


def test_native_output_names_what_is_explained(tmp_path):
    (tmp_path / "xgb").mkdir(), (tmp_path / "lgb").mkdir()
    binary, _ = _xgb("binary", tmp_path / "xgb")
    regression, _ = _lgb("regression", tmp_path / "lgb")

    assert explain(binary, ROWS, background=None, feature_names=NAMES).output == (
        "log-odds of class 1"
    )
    assert explain(regression, ROWS, background=None, feature_names=NAMES).output == "prediction"


def test_linear_model_gets_its_exact_linear_attributions():
    fitted = LinearRegression().fit(X, TARGETS["regression"])
    result = explain(SklearnModel(fitted), ROWS, background=BG, feature_names=NAMES)

    assert result.method == "sampled_shapley"
    expected = fitted.coef_ * (ROWS - BG.mean(axis=0))
    np.testing.assert_allclose(result.attributions, expected, atol=1e-6)
    np.testing.assert_allclose(result.base_value, fitted.predict(BG).mean(), atol=1e-9)


@pytest.mark.parametrize(
    ("estimator", "target"),
    [
        (LogisticRegression(), "binary"),
        (RandomForestClassifier(n_estimators=20, max_depth=4, random_state=0), "binary"),
        (RandomForestClassifier(n_estimators=20, max_depth=4, random_state=0), "multi"),
    ],
)
def test_classifier_attributions_add_up_to_the_probability(estimator, target):
    fitted = estimator.fit(X, TARGETS[target])
    result = explain(SklearnClassifier(fitted), ROWS, background=BG, feature_names=NAMES)

    # Binary models explain class 1, multiclass ones their predicted class.
    k = np.ones(8, dtype=int) if target == "binary" else fitted.predict(ROWS)
    p_row, p_bg = fitted.predict_proba(ROWS), fitted.predict_proba(BG)
    # Every sampled chain of coalitions telescopes from f(background) to f(x): exact to rounding.
    np.testing.assert_allclose(result.base_value, p_bg[:, k].mean(axis=0), atol=1e-9)
    total = result.attributions.sum(axis=1) + result.base_value
    np.testing.assert_allclose(total, p_row[np.arange(8), k], atol=1e-9)
    assert result.classes == k.tolist()


def test_few_features_take_every_permutation_and_are_exact():
    fitted = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0)
    fitted.fit(X[:, :3], TARGETS["binary"])
    bg, x = BG[:40, :3], ROWS[:1, :3]
    result = explain(SklearnClassifier(fitted), x, background=bg, feature_names=NAMES[:3])

    assert result.details == {"permutations": 6, "background_rows": 40}
    expected = exact_shapley(lambda Z: fitted.predict_proba(Z)[:, 1], x[0], bg)
    np.testing.assert_allclose(result.attributions[0], expected, atol=1e-9)


class PairwiseModel:
    """No explain and no predict_proba: only predict, with pairwise feature interactions."""

    def predict(self, X: np.ndarray) -> np.ndarray:
        return X[:, 0] * X[:, 1] - 2.0 * X[:, 2] * X[:, 3] + X[:, 4] + 0.0 * X[:, 5]


def test_predict_only_model_with_pairwise_interactions_is_exact_with_antithetic_pairs():
    model = CustomModel(PairwiseModel())
    bg = BG[:30]
    result = explain(model, ROWS[:2], background=bg, feature_names=NAMES, samples=8)

    assert result.output == "prediction" and result.classes is None
    assert result.details["permutations"] == 8  # 4 random ones and their reverses
    for row, phi in zip(ROWS[:2], result.attributions, strict=True):
        np.testing.assert_allclose(phi, exact_shapley(PairwiseModel().predict, row, bg), atol=1e-9)


def test_to_dict_names_every_feature_and_is_json():
    fitted = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, TARGETS["multi"])
    result = explain(
        SklearnClassifier(fitted), ROWS[:3], background=X, feature_names=NAMES, samples=16
    )
    body = orjson.loads(orjson.dumps(result.to_dict()))

    assert [list(row) for row in body["explanations"]] == [NAMES] * 3
    assert len(body["base_values"]) == 3
    assert body["method"] == "sampled_shapley"
    assert body["output"] == "probability of the predicted class"
    assert body["classes"] == fitted.predict(ROWS[:3]).tolist()
    assert body["permutations"] == 16 and body["background_rows"] == 100  # of 200 given


def test_same_seed_same_attributions():
    fitted = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, TARGETS["binary"])
    model = SklearnClassifier(fitted)

    def run(seed: int) -> np.ndarray:
        return explain(model, ROWS, background=X, feature_names=NAMES, samples=8, seed=seed)

    np.testing.assert_array_equal(run(3).attributions, run(3).attributions)
    assert not np.allclose(run(3).attributions, run(4).attributions)


def test_without_background_the_reference_is_the_column_means():
    fitted = LinearRegression().fit(X, TARGETS["regression"])
    many = explain(SklearnModel(fitted), ROWS, background=None, feature_names=NAMES)

    np.testing.assert_allclose(many.attributions, fitted.coef_ * (ROWS - ROWS.mean(0)), atol=1e-9)
    with pytest.raises(InvalidInput, match="one row needs background rows"):  # its own reference
        explain(SklearnModel(fitted), ROWS[:1], background=None, feature_names=NAMES)


class TextModel:
    def predict(self, X: np.ndarray) -> np.ndarray:
        return X[:, 0].astype(np.float64) + 10.0 * (X[:, 1] == "paris")


def test_text_columns_take_their_commonest_value_as_reference():
    rows = np.array([[1.0, "paris"], [2.0, "lyon"], [3.0, "paris"]], dtype=object)
    result = explain(CustomModel(TextModel()), rows, background=None, feature_names=["n", "city"])

    np.testing.assert_allclose(result.attributions, [[-1.0, 0.0], [0.0, -10.0], [1.0, 0.0]])


class LabelModel:
    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.where(X[:, 0] > 0, "yes", "no")


def test_predictions_that_are_not_numbers_cannot_be_explained():
    with pytest.raises(InvalidInput, match="neither probabilities nor one number"):
        explain(CustomModel(LabelModel()), ROWS, background=BG, feature_names=NAMES)


def test_mismatched_widths_are_refused():
    model = CustomModel(PairwiseModel())
    with pytest.raises(InvalidInput, match="background rows need 6 values"):
        explain(model, ROWS, background=BG[:, :4], feature_names=NAMES)
    with pytest.raises(InvalidInput, match="4 feature names"):
        explain(model, ROWS, background=BG, feature_names=NAMES[:4])


SPEC = InputSpec.from_signature(Signature(tuple(FieldSpec(n, "float64") for n in NAMES)))


def test_explain_request_decodes_rows_background_and_parameters():
    body = {
        "instances": [dict(zip(NAMES, r, strict=True)) for r in ROWS[:2].tolist()],
        "background": BG[:5].tolist(),
        "parameters": {"samples": 16, "seed": 7},
    }
    request = decode_explain_v1(orjson.dumps(body), SPEC)

    np.testing.assert_array_equal(request.rows, ROWS[:2])
    np.testing.assert_array_equal(request.background, BG[:5])
    assert (request.samples, request.seed) == (16, 7)
    plain = decode_explain_v1(orjson.dumps({"instances": ROWS[:2].tolist()}), SPEC)
    assert plain.background is None and (plain.samples, plain.seed) == (64, 0)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"rows": []}, 'an object with an "instances" list'),
        ({"instances": X[:101].tolist()}, "at most 100 rows"),
        ({"instances": [[1.0] * 6], "parameters": {"samples": 1}}, "samples must be an integer"),
        ({"instances": [[1.0] * 6], "parameters": {"samples": True}}, "samples must be"),
        ({"instances": [[1.0] * 6], "parameters": {"seed": -1}}, "seed must be"),
        ({"instances": [[1.0] * 6], "background": [[1.0] * 6, [2.0]]}, "background[1] has 1"),
        ({"instances": [[1.0] * 6], "background": [[1.0] * 4]}, "background: each row must have 6"),
    ],
)
def test_bad_explain_requests_say_what_is_wrong(body, message):
    with pytest.raises(InvalidInput, match=re.escape(message)):
        decode_explain_v1(orjson.dumps(body), SPEC)
