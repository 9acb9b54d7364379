"""XGBoost runtime: a Booster or sklearn-API model saved with ``save_model`` (.json, .ubj)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from cloche.errors import CorruptArtifact
from cloche.registry.signatures import FieldSpec, InputKind, Signature, Task
from cloche.runtimes import _common
from cloche.runtimes.base import require

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

    def _raw(self, X: Any) -> np.ndarray:
        if _common.is_frame(X):
            if self._names is None:
                X = X.to_numpy()
            elif list(X.columns) != self._names:
                X = X[self._names]
        else:
            X = np.asarray(X)
            if X.dtype == object:  # rows decoded from JSON; None reads as a missing value
                X = X.astype(np.float64)
        return np.asarray(self.booster.inplace_predict(X, iteration_range=self._range))

    def predict(self, X: Any) -> np.ndarray:
        return self._raw(X)

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


def _ubj_damage(data: bytes) -> str | None:
    """Why this UBJSON would make XGBoost's reader run off its end, if it would.

    XGBoost trusts UBJSON lengths: a truncated .ubj makes it read past the buffer and allocate
    without bound instead of raising, so every length is checked against the file first.
    """
    try:
        _ubj_value(data, 0, None)
    except (IndexError, struct.error, _Truncated, RecursionError):
        return "it is truncated or its UBJSON is damaged"
    return None


class _Truncated(Exception):
    pass


_UBJ_INTS = {ord("i"): ">b", ord("U"): ">B", ord("I"): ">h", ord("l"): ">i", ord("L"): ">q"}
_UBJ_SCALARS = {ord("i"): 1, ord("U"): 1, ord("I"): 2, ord("l"): 4, ord("L"): 8, ord("d"): 4}
_UBJ_SCALARS |= {ord("D"): 8, ord("C"): 1, ord("Z"): 0, ord("N"): 0, ord("T"): 0, ord("F"): 0}


def _ubj_length(data: bytes, pos: int) -> tuple[int, int]:
    fmt = _UBJ_INTS.get(data[pos])
    if fmt is None:
        raise _Truncated
    (n,) = struct.unpack_from(fmt, data, pos + 1)
    # Every element takes at least a byte, or XGBoost would allocate for nothing.
    if not 0 <= n <= len(data):
        raise _Truncated
    return n, pos + 1 + struct.calcsize(fmt)


def _ubj_end(data: bytes, end: int) -> int:
    if end > len(data):
        raise _Truncated
    return end


def _ubj_value(data: bytes, pos: int, marker: int | None) -> int:
    """The position just past the UBJSON value at ``pos``."""
    if marker is None:
        marker, pos = data[pos], pos + 1
    if marker in _UBJ_SCALARS:
        return _ubj_end(data, pos + _UBJ_SCALARS[marker])
    if marker in (ord("S"), ord("H")):
        n, pos = _ubj_length(data, pos)
        return _ubj_end(data, pos + n)
    if marker not in (ord("["), ord("{")):
        raise _Truncated
    is_object, typed, count = marker == ord("{"), None, None
    if data[pos] == ord("$"):
        typed, pos = data[pos + 1], pos + 2
    if data[pos] == ord("#"):
        count, pos = _ubj_length(data, pos + 1)
    if count is None:
        close = ord("}") if is_object else ord("]")
        while data[pos] != close:
            if is_object:
                n, pos = _ubj_length(data, pos)
                pos = _ubj_end(data, pos + n)
            pos = _ubj_value(data, pos, None)
        return pos + 1
    if typed in _UBJ_SCALARS and not is_object:
        return _ubj_end(data, pos + count * _UBJ_SCALARS[typed])
    for _ in range(count):
        if is_object:
            n, pos = _ubj_length(data, pos)
            pos = _ubj_end(data, pos + n)
        pos = _ubj_value(data, pos, typed)
    return pos


class XGBoostRuntime:
    name = "xgboost"
    extra = "xgboost"

    def load(self, artifact_dir: Path) -> XGBoostModel:
        xgb = require("xgboost", extra=self.extra, framework="XGBoost")
        path = _common.model_file(artifact_dir, SUFFIXES)
        data = path.read_bytes()
        problem = _ubj_damage(data) if data[:1] == b"{" and data[1:2] != b'"' else None
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
