"""scikit-learn runtime: a pickled estimator or Pipeline (.joblib, .pkl, .pickle)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from cloche.errors import CorruptArtifact
from cloche.runtimes import _common
from cloche.runtimes.base import require
from cloche.signatures import FieldSpec, InputKind, Signature, Task

SUFFIXES = (".joblib", ".pkl", ".pickle")
EXPECTED = "a scikit-learn model (a joblib or pickle file holding an estimator)"


class SklearnModel:
    """A fitted estimator; DataFrames keep their column names only if it was fitted with names."""

    framework = "sklearn"

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator
        names = getattr(estimator, "feature_names_in_", None)
        self._names: list[str] | None = None if names is None else [str(n) for n in names]

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.estimator.predict(self._prepare(X)))

    def _prepare(self, X: Any) -> Any:
        if _common.is_frame(X):
            if self._names is None:
                # Names the estimator never saw only earn a warning from sklearn.
                return X.to_numpy()
            return X if list(X.columns) == self._names else X[self._names]
        X = np.asarray(X)
        if self._names is None:
            return X
        # Pipelines with a ColumnTransformer select columns by name, so rebuild the frame.
        pd = require("pandas", extra="sklearn", framework="scikit-learn")
        frame = pd.DataFrame(X, columns=self._names)
        return frame.infer_objects() if X.dtype == object else frame

    def signature(self) -> Signature:
        est = self.estimator
        inputs: tuple[FieldSpec, ...] = ()
        kind: InputKind = "tabular"
        if self._names is not None:
            cats = _categories_by_column(est)
            inputs = tuple(_input_field(name, cats.get(name)) for name in self._names)
        elif getattr(est, "n_features_in_", None):
            inputs, kind = (_common.unnamed_input(int(est.n_features_in_)),), "tensor"
        classes = getattr(est, "classes_", None)
        if classes is None:
            base = require("sklearn.base", extra="sklearn", framework="scikit-learn")
            task: Task = "regression" if base.is_regressor(est) else "unknown"
            return Signature(inputs, _common.regressor_outputs(), kind, task, source=("model",))
        classes = np.asarray(classes)
        outputs = _common.classifier_outputs(_common.dtype_name(classes.dtype), len(classes))
        if not hasattr(self, "predict_proba"):
            outputs = outputs[:1]
        labels = tuple(classes.tolist())
        return Signature(inputs, outputs, kind, "classification", labels, source=("model",))


class SklearnClassifier(SklearnModel):
    def predict_proba(self, X: Any) -> np.ndarray:
        return np.asarray(self.estimator.predict_proba(self._prepare(X)))


def _input_field(name: str, categories: np.ndarray | None) -> FieldSpec:
    if categories is None:
        return FieldSpec(name=name, dtype="float64")
    values = tuple(c for c in categories.tolist() if c is not None and c == c)  # drop NaN
    return FieldSpec(name=name, dtype=_common.dtype_name(categories.dtype), categories=values)


def _categories_by_column(est: Any) -> dict[str, np.ndarray]:
    """Categories that a ColumnTransformer's encoders learned, keyed by input column."""
    steps = getattr(est, "steps", None)
    first = steps[0][1] if steps else est
    found: dict[str, np.ndarray] = {}
    for _, transformer, columns in getattr(first, "transformers_", ()):
        encoder = transformer.steps[-1][1] if hasattr(transformer, "steps") else transformer
        categories = getattr(encoder, "categories_", None)
        cols = [columns] if isinstance(columns, str) else columns
        if categories is None or not isinstance(cols, list | tuple | np.ndarray):
            continue
        if len(cols) == len(categories) and all(isinstance(c, str) for c in cols):
            found.update(zip(cols, categories, strict=True))
    return found


class SklearnRuntime:
    name = "sklearn"
    extra = "sklearn"

    def load(self, artifact_dir: Path) -> SklearnModel:
        """Unpickle the estimator; only ever called on registry artifacts, never request data."""
        require("sklearn", extra=self.extra, framework="scikit-learn")
        joblib = require("joblib", extra=self.extra, framework="scikit-learn")
        path = _common.model_file(artifact_dir, SUFFIXES)
        try:
            estimator = joblib.load(path)
        except ModuleNotFoundError as exc:
            raise _common.missing_module(path.name, exc) from exc
        except Exception as exc:
            try:
                with path.open("rb") as fh:
                    estimator = pickle.load(fh)
            except Exception:
                raise _common.corrupt(path, EXPECTED, exc) from exc
        if not callable(getattr(estimator, "predict", None)):
            raise CorruptArtifact(
                f"{path.name} is not {EXPECTED}: it holds a {type(estimator).__name__}, "
                "which has no predict method",
                hint="save the fitted estimator or Pipeline itself with joblib.dump",
            )
        if callable(getattr(estimator, "predict_proba", None)):
            return SklearnClassifier(estimator)
        return SklearnModel(estimator)
