"""LightGBM runtime: a Booster saved as a text model file (.txt, .lgb, .model, .bst)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from cloche.errors import CorruptArtifact
from cloche.runtimes import _common, _guards
from cloche.runtimes.base import require
from cloche.signatures import FieldSpec, InputKind, Signature, Task

SUFFIXES = (".txt", ".lgb", ".model", ".bst")
EXPECTED = "a LightGBM text model"
CLASSIFICATION_OBJECTIVES = frozenset({"binary", "multiclass", "multiclassova"})
RANKING_OBJECTIVES = frozenset({"lambdarank", "rank_xendcg"})
# LightGBM invents these names for data given without column names.
_AUTO_NAME = re.compile(r"Column_\d+")


class LightGBMModel:
    framework = "lightgbm"

    def __init__(self, booster: Any, objective: str, n_classes: int) -> None:
        self.booster = booster
        self.objective = objective
        self.n_classes = n_classes
        names = [str(n) for n in booster.feature_name()]
        self._names = None if all(_AUTO_NAME.fullmatch(n) for n in names) else names

    def _input(self, X: Any) -> Any:
        if _common.is_frame(X):
            # LightGBM reads DataFrame columns by position, not by name.
            if self._names is not None and list(X.columns) != self._names:
                X = X[self._names]
        else:
            X = np.asarray(X)
            if X.dtype == object:  # rows decoded from JSON; None reads as a missing value
                X = X.astype(np.float64)
        return X

    def _raw(self, X: Any) -> np.ndarray:
        return np.asarray(self.booster.predict(self._input(X)))

    def predict(self, X: Any) -> np.ndarray:
        return self._raw(X)

    def explain(self, X: Any) -> np.ndarray:
        """TreeSHAP values of the raw score: (rows, features + 1), or (rows, classes,
        features + 1) for multiclass; the last column is the bias (the expected raw score)."""
        contribs = np.asarray(self.booster.predict(self._input(X), pred_contrib=True))
        if self.n_classes > 2:  # LightGBM lays the classes side by side in one row
            contribs = contribs.reshape(len(contribs), self.n_classes, -1)
        return contribs

    def signature(self) -> Signature:
        inputs: tuple[FieldSpec, ...]
        kind: InputKind = "tabular"
        if self._names is not None:
            inputs = tuple(FieldSpec(name=n, dtype="float64") for n in self._names)
        else:
            inputs, kind = (_common.unnamed_input(self.booster.num_feature()),), "tensor"
        if self.n_classes:
            return Signature(
                inputs,
                _common.classifier_outputs("int64", self.n_classes),
                kind,
                "classification",
                classes=tuple(range(self.n_classes)),
                source=("model",),
            )
        task: Task = "unknown" if self.objective in RANKING_OBJECTIVES else "regression"
        return Signature(inputs, _common.regressor_outputs(), kind, task, source=("model",))


class LightGBMClassifier(LightGBMModel):
    def predict(self, X: Any) -> np.ndarray:
        return np.argmax(self.predict_proba(X), axis=1)

    def predict_proba(self, X: Any) -> np.ndarray:
        out = self._raw(X)
        if self.objective == "binary":
            return np.column_stack([1.0 - out, out])
        return out


class LightGBMRuntime:
    name = "lightgbm"
    extra = "lightgbm"

    def load(self, artifact_dir: Path) -> LightGBMModel:
        lgb = require("lightgbm", extra=self.extra, framework="LightGBM")
        path = _common.model_file(artifact_dir, SUFFIXES)
        data = path.read_bytes()
        problem = _guards.lightgbm_text_damage(data)
        if problem is not None:
            raise CorruptArtifact(f"{path.name} is not {EXPECTED}: {problem}")
        try:
            booster = lgb.Booster(model_str=data.decode("utf-8"))
            objective = (str(booster.params.get("objective", "")).split() or [""])[0]
            n_classes = int(booster.params.get("num_class", 1))
        except Exception as exc:
            raise _common.corrupt(path, EXPECTED, exc) from exc
        if objective not in CLASSIFICATION_OBJECTIVES:
            return LightGBMModel(booster, objective, 0)
        return LightGBMClassifier(booster, objective, 2 if objective == "binary" else n_classes)
