"""Models of every framework `cloche export` converts, trained once per test module, and the
SDK fixture the export tests share."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

import cloche
from cloche.config import Settings

FEATURES = ["tenure", "spend", "visits", "age"]


@dataclass(frozen=True)
class Case:
    """A trained model saved as the registry stores it, with rows to compare predictions on."""

    path: Path
    framework: str
    baseline: Path | None
    rows: Any  # model input as the server decodes it: a float array, or object rows
    classifier: bool


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        rng.normal(size=(400, 4)) * [1, 30, 5, 12] + [0, 50, 10, 40], columns=FEATURES
    )
    score = frame["tenure"] + 0.02 * frame["spend"] - 0.1 * frame["visits"]
    labels = np.digitize(score, [0.5, 1.5]).astype(np.int64)
    target = 3.0 * frame["tenure"] + 0.5 * frame["spend"] + rng.normal(scale=0.1, size=400)
    return frame, labels, target.to_numpy()


def save_sklearn(folder: Path, estimator: Any) -> Path:
    path = folder / "model.joblib"
    joblib.dump(estimator, path)
    return path


def _mixed_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "plan": rng.choice(["basic", "pro", "enterprise"], size=n),
            "tenure": rng.integers(1, 72, size=n),
            "spend": rng.gamma(2.0, 30.0, size=n).round(2),
        }
    )


CASES: dict[str, Callable[[Path, tuple[pd.DataFrame, np.ndarray, np.ndarray]], Case]] = {}


def case(name: str) -> Callable[[Callable[..., Case]], Callable[..., Case]]:
    def register(build: Callable[..., Case]) -> Callable[..., Case]:
        CASES[name] = build
        return build

    return register


def _baseline(folder: Path, frame: pd.DataFrame) -> Path:
    path = folder / "train.parquet"
    frame.to_parquet(path)
    return path


@case("logistic_regression")
def _lr(folder: Path, data: Any) -> Case:
    from sklearn.linear_model import LogisticRegression

    frame, labels, _ = data
    model = LogisticRegression(max_iter=1000).fit(frame, labels)
    rows = frame.to_numpy()[:50]
    return Case(save_sklearn(folder, model), "sklearn", _baseline(folder, frame), rows, True)


@case("hist_gradient_boosting")
def _hgb(folder: Path, data: Any) -> Case:
    from sklearn.ensemble import HistGradientBoostingClassifier

    frame, labels, _ = data
    model = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(frame, labels)
    # No baseline: parity runs on rows generated from the signature.
    return Case(save_sklearn(folder, model), "sklearn", None, frame.to_numpy()[:50], True)


@case("random_forest_regressor")
def _rf(folder: Path, data: Any) -> Case:
    from sklearn.ensemble import RandomForestRegressor

    frame, _, target = data
    model = RandomForestRegressor(n_estimators=20, max_depth=6, random_state=0).fit(frame, target)
    rows = frame.to_numpy()[:50]
    return Case(save_sklearn(folder, model), "sklearn", _baseline(folder, frame), rows, False)


@case("scaled_pipeline")
def _pipeline(folder: Path, data: Any) -> Case:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    frame, labels, _ = data
    model = Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression(max_iter=1000))])
    model.fit(frame, labels)
    rows = frame.to_numpy()[:50]
    return Case(save_sklearn(folder, model), "sklearn", _baseline(folder, frame), rows, True)


@case("column_transformer_with_text")
def _mixed(folder: Path, data: Any) -> Case:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = _mixed_frame(400, seed=5)
    labels = ((frame["tenure"] < 20) | (frame["plan"] == "basic")).to_numpy().astype(np.int64)
    features = ColumnTransformer(
        [
            ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
            ("numeric", StandardScaler(), ["tenure", "spend"]),
        ]
    )
    model = Pipeline([("features", features), ("gb", GradientBoostingClassifier(n_estimators=20))])
    model.fit(frame, labels)
    rows = np.array(frame.head(50).to_numpy().tolist(), dtype=object)
    return Case(save_sklearn(folder, model), "sklearn", _baseline(folder, frame), rows, True)


@case("xgboost_classifier")
def _xgb(folder: Path, data: Any) -> Case:
    import xgboost as xgb

    frame, labels, _ = data
    model = xgb.XGBClassifier(n_estimators=20, max_depth=3, random_state=0).fit(frame, labels)
    path = folder / "model.json"
    model.save_model(path)
    return Case(path, "xgboost", _baseline(folder, frame), frame.to_numpy()[:50], True)


@case("lightgbm_classifier")
def _lgbm(folder: Path, data: Any) -> Case:
    import lightgbm as lgb

    frame, labels, _ = data
    model = lgb.LGBMClassifier(n_estimators=20, num_leaves=8, verbose=-1).fit(frame, labels)
    path = folder / "model.txt"
    model.booster_.save_model(str(path))
    return Case(path, "lightgbm", _baseline(folder, frame), frame.to_numpy()[:50], True)


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory, data: Any) -> dict[str, Case]:
    """Every model trained once for the module, each in its own folder."""
    built = {}
    for name, build in CASES.items():
        folder = tmp_path_factory.mktemp(name)
        built[name] = build(folder, data)
    return built


@pytest.fixture
def sdk(settings: Settings) -> Iterator[cloche.Client]:
    with cloche.Client(settings=settings) as client:
        yield client


def upload_case(sdk: cloche.Client, name: str, found: Case) -> str:
    version = sdk.models.upload(
        found.path, name=name.replace("_", "-"), framework=found.framework, baseline=found.baseline
    )
    return version.ref
