"""XGBoost runtime: a Booster or sklearn-API model saved with ``save_model`` (.json, .ubj)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from cloche.errors import CorruptArtifact
from cloche.runtimes import _common, _guards
from cloche.runtimes.base import require
from cloche.signatures import FieldSpec, InputKind, Signature, Task

SUFFIXES = (".json", ".ubj")
EXPECTED = "an XGBoost model"
# Objectives whose raw output is a probability (or a logit of one) rather than a label.
PROBA_OBJECTIVES = frozenset({"binary:logistic", "binary:logitraw", "multi:softprob"})
FEATURE_TYPES = {"int": "int64", "i": "bool", "c": "category", "float": "float64", "q": "float64"}


class XGBoostModel:
    framework = "xgboost"

    def __init__(self, booster: Any, objective: str, n_classes: int) -> None:
        self.booster = booster
        self.objective = objective
        self.n_classes = n_classes
        self._names: list[str] | None = booster.feature_names
        best = booster.attributes().get("best_iteration")
        # The sklearn API predicts with the early-stopping best iteration; so must we.
        self._range = (0, int(best) + 1) if best is not None else (0, 0)

    def _input(self, X: Any) -> Any:
        if _common.is_frame(X):
            if self._names is None:
                X = X.to_numpy()
            elif list(X.columns) != self._names:
                X = X[self._names]
        else:
            X = np.asarray(X)
            if X.dtype == object:  # rows decoded from JSON; None reads as a missing value
                X = X.astype(np.float64)
        return X

    def _raw(self, X: Any) -> np.ndarray:
        return np.asarray(self.booster.inplace_predict(self._input(X), iteration_range=self._range))

    def predict(self, X: Any) -> np.ndarray:
        return self._raw(X)

    def explain(self, X: Any) -> np.ndarray:
        """TreeSHAP values of the margin: (rows, features + 1), or (rows, classes, features + 1)
        for multiclass; the last column is the bias (the expected margin)."""
        xgb = require("xgboost", extra="xgboost", framework="XGBoost")
        matrix = xgb.DMatrix(self._input(X), enable_categorical=True)
        # _input already put the columns in the booster's order; an ndarray carries no names.
        contribs = self.booster.predict(
            matrix, pred_contribs=True, iteration_range=self._range, validate_features=False
        )
        return np.asarray(contribs)

    def signature(self) -> Signature:
        inputs: tuple[FieldSpec, ...]
        kind: InputKind = "tabular"
        if self._names is not None:
            types = self.booster.feature_types or ["float"] * len(self._names)
            inputs = tuple(
                FieldSpec(name=n, dtype=FEATURE_TYPES.get(t, "float64"))
                for n, t in zip(self._names, types, strict=True)
            )
        else:
            inputs, kind = (_common.unnamed_input(self.booster.num_features()),), "tensor"
        if self.n_classes:
            outputs = _common.classifier_outputs("int64", self.n_classes, "float32")
            if not isinstance(self, XGBoostProbaClassifier):
                outputs = outputs[:1]
            return Signature(
                inputs,
                outputs,
                kind,
                "classification",
                classes=tuple(range(self.n_classes)),
                source=("model",),
            )
        task: Task = "unknown" if self.objective.startswith("rank:") else "regression"
        return Signature(
            inputs, _common.regressor_outputs("float32"), kind, task, source=("model",)
        )


class XGBoostClassifier(XGBoostModel):
    """Objectives that output labels (multi:softmax, binary:hinge): no probabilities."""

    def predict(self, X: Any) -> np.ndarray:
        return self._raw(X).astype(np.int64)


class XGBoostProbaClassifier(XGBoostModel):
    def predict(self, X: Any) -> np.ndarray:
        return np.argmax(self.predict_proba(X), axis=1)

    def predict_proba(self, X: Any) -> np.ndarray:
        out = self._raw(X)
        if self.objective == "multi:softprob":
            return out
        if self.objective == "binary:logitraw":
            out = 1.0 / (1.0 + np.exp(-out))
        return np.column_stack([1 - out, out])


class XGBoostRuntime:
    name = "xgboost"
    extra = "xgboost"

    def load(self, artifact_dir: Path) -> XGBoostModel:
        xgb = require("xgboost", extra=self.extra, framework="XGBoost")
        path = _common.model_file(artifact_dir, SUFFIXES)
        data = path.read_bytes()
        is_ubj = data[:1] == b"{" and data[1:2] in b"iUIlL$#"  # JSON has a quote or space here
        problem = _guards.ubjson_damage(data) if is_ubj else None
        if problem is not None:
            raise CorruptArtifact(f"{path.name} is not {EXPECTED}: {problem}")
        try:
            booster = xgb.Booster()
            booster.load_model(bytearray(data))
            learner = json.loads(booster.save_config())["learner"]
            objective = str(learner["objective"]["name"])
            n_classes = int(learner["learner_model_param"].get("num_class", "0"))
        except Exception as exc:
            raise _common.corrupt(path, EXPECTED, exc) from exc
        if objective.startswith("binary:"):
            n_classes = 2
        elif not objective.startswith("multi:"):
            return XGBoostModel(booster, objective, 0)
        if objective in PROBA_OBJECTIVES:
            return XGBoostProbaClassifier(booster, objective, n_classes)
        return XGBoostClassifier(booster, objective, n_classes)
