"""Scoring record batches with a loaded model: input conversion, bad rows, output columns.

A ``Scorer`` loads the model once and turns each batch into output rows plus error records. Bad
rows never fail a batch: a value that does not convert to its column's type, or a row the model
raises on (found by halving the failing batch), becomes an error record and the rest are scored.
Numeric models get one float64 array, as on the serving path; models with text features get a
pandas DataFrame, which runtimes select columns from by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from cloche.batch.schema import READ_ERROR_COLUMN, ColumnPlan, coerce, columns_for, target_type
from cloche.batch.spec import JobSpec, ModelSource
from cloche.errors import PredictFailed
from cloche.runtimes import get_runtime, has_predict_proba
from cloche.signatures import Signature


@dataclass
class ScoredChunk:
    table: pa.Table  # output rows: row or the id column, passthrough, prediction, probability_*
    errors: list[dict[str, Any]] = field(default_factory=list)  # {"row", "input", "message"}


@dataclass
class _Part:
    """Consecutive model-input rows ``lo:hi`` the model scored in one call."""

    lo: int
    hi: int
    prediction: np.ndarray
    probabilities: np.ndarray | None


class Scorer:
    """A model loaded once, scoring batches of one job's input."""

    def __init__(self, model: ModelSource, spec: JobSpec, *, columns: ColumnPlan | None = None):
        self.model = get_runtime(model.framework).load(Path(model.artifact_dir))
        stored = Signature.from_dict(model.signature)
        own = self.model.signature()
        self.signature = own if stored.is_empty else stored
        self.spec = spec
        self.columns = columns  # None: from the signature, or the first batch for tensor models
        classes = self.signature.classes if self.signature.classes is not None else own.classes
        self.classes = None if classes is None else list(classes)
        regression = self.signature.task == "regression"
        self.with_probabilities = has_predict_proba(self.model) and not regression
        self._prediction_type = _label_type(self.classes, regression)

    def score(self, batch: pa.RecordBatch | pa.Table, first_row: int) -> ScoredChunk:
        """Output rows and error records for ``batch``, whose first row is ``first_row``."""
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        columns = self.columns or columns_for(self.signature, self.spec, table.schema)
        self.columns = columns
        values, bad = self._convert(table, columns)
        usable = np.ones(table.num_rows, dtype=bool)
        usable[list(bad)] = False
        keep = np.flatnonzero(usable).astype(np.int64)
        parts, failed = self._predict_isolating(self._model_input(values, keep, columns))
        for position, message in failed.items():
            bad[int(keep[position])] = message
        scored = np.concatenate([keep[p.lo : p.hi] for p in parts] or [keep[:0]])
        out = self._output(values, scored, parts, columns, first_row)
        return ScoredChunk(out, _error_records(table, columns, bad, first_row))

    def _convert(
        self, table: pa.Table, columns: ColumnPlan
    ) -> tuple[dict[str, pa.Array], dict[int, str]]:
        """Each needed column in its planned type, and the bad rows with their reason."""
        bad: dict[int, str] = {}
        if READ_ERROR_COLUMN in table.column_names:
            reasons = table.column(READ_ERROR_COLUMN).to_pylist()
            bad.update((i, r) for i, r in enumerate(reasons) if r is not None)
        values = {}
        for name in columns.needed:
            raw = table.column(name) if name in table.column_names else pa.nulls(table.num_rows)
            target = self._type_of(name, columns) or raw.type
            values[name], failed = coerce(raw, target)
            for i in failed:
                shown = repr(raw[i].as_py())[:80]
                bad.setdefault(i, f"column {name!r}: {shown} is not a valid {target}")
        return values, bad

    @staticmethod
    def _type_of(name: str, columns: ColumnPlan) -> pa.DataType | None:
        if columns.read_schema is not None and name in columns.read_schema.names:
            return columns.read_schema.field(name).type
        if name in columns.features:
            index = columns.features.index(name)
            return pa.float64() if columns.tensor else target_type(columns.dtypes[index])
        return None

    def _model_input(self, values: dict[str, pa.Array], keep: np.ndarray, cols: ColumnPlan) -> Any:
        rows = len(keep)
        whole = rows == len(values[cols.features[0]]) if cols.features else True
        picked = {n: values[n] if whole else values[n].take(pa.array(keep)) for n in cols.features}
        if cols.all_numeric:
            X = np.empty((rows, len(cols.features)), dtype=np.float64)
            for j, name in enumerate(cols.features):
                X[:, j] = _floats(picked[name])
            return X.astype(cols.tensor_dtype, copy=False) if cols.tensor else X
        import pandas as pd  # only models with text features need it

        frame = {
            n: _floats(a) if pa.types.is_boolean(a.type) else a.to_numpy(zero_copy_only=False)
            for n, a in picked.items()
        }
        return pd.DataFrame(frame, index=pd.RangeIndex(rows), columns=list(cols.features))

    def _predict_isolating(self, X: Any) -> tuple[list[_Part], dict[int, str]]:
        """Predict all rows; where the model raises, halve until the failing rows are alone."""
        parts: list[_Part] = []
        failed: dict[int, str] = {}
        todo = [(0, len(X))] if len(X) else []
        while todo:
            lo, hi = todo.pop()
            rows = X[lo:hi] if isinstance(X, np.ndarray) else X.iloc[lo:hi]
            try:
                prediction, proba = self._predict(rows)
            except Exception as exc:  # the model's own error, whatever its type, is the reason
                if hi - lo == 1:
                    failed[lo] = f"the model failed on this row: {type(exc).__name__}: {exc}"[:500]
                else:
                    mid = (lo + hi) // 2
                    todo += [(mid, hi), (lo, mid)]
                continue
            parts.append(_Part(lo, hi, self._check(prediction, hi - lo), proba))
        return sorted(parts, key=lambda p: p.lo), failed

    def _predict(self, rows: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels and probabilities. A classifier's label is its likeliest class, so it comes
        from the probabilities: calling predict as well would run the model twice (it costs
        as much as predict_proba for tree ensembles)."""
        if not self.with_probabilities:
            return np.asarray(self.model.predict(rows)), None
        proba = np.asarray(self.model.predict_proba(rows))  # type: ignore[attr-defined]
        if self.classes is not None and proba.ndim == 2 and proba.shape[1] == len(self.classes):
            return np.asarray(self.classes)[proba.argmax(axis=1)], proba
        return np.asarray(self.model.predict(rows)), proba

    def _check(self, prediction: np.ndarray, rows: int) -> np.ndarray:
        if prediction.ndim == 2 and prediction.shape[1] == 1:
            prediction = prediction[:, 0]
        if len(prediction) != rows:
            raise PredictFailed(f"the model returned {len(prediction)} predictions for {rows} rows")
        return prediction

    def _output(
        self,
        values: dict[str, pa.Array],
        scored: np.ndarray,
        parts: list[_Part],
        cols: ColumnPlan,
        first_row: int,
    ) -> pa.Table:
        take = pa.array(scored, pa.int64())
        out: dict[str, pa.Array] = {}
        if cols.id_column:
            out[cols.id_column] = values[cols.id_column].take(take)
        else:
            out["row"] = pa.array(scored + first_row, pa.int64())
        for name in cols.passthrough:
            out[name] = values[name].take(take)
        out["prediction"] = self._predictions([p.prediction for p in parts])
        if self.with_probabilities:
            out.update(self._probabilities([p.probabilities for p in parts], len(scored)))
        return pa.table(out)

    def _predictions(self, pieces: list[np.ndarray]) -> pa.Array:
        if not pieces:
            return pa.array([], self._prediction_type or pa.float64())
        values = np.concatenate(pieces)
        if values.ndim == 2:  # one vector per row (e.g. a tensor model's raw outputs)
            flat = pa.array(values.reshape(-1).astype(np.float64))
            array: pa.Array = pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
        else:
            array = pa.array(values)
        if self._prediction_type is None:
            self._prediction_type = array.type  # every later batch gets the same type
        try:
            return array.cast(self._prediction_type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise PredictFailed(
                f"the model predicts {array.type} values, but its classes are "
                f"{self._prediction_type}: {exc}"
            ) from exc

    def _probabilities(self, pieces: list[np.ndarray | None], rows: int) -> dict[str, pa.Array]:
        blocks = [p for p in pieces if p is not None]
        proba = np.concatenate(blocks) if blocks else None
        if self.classes is None and proba is not None:
            self.classes = list(range(proba.shape[1]))
        classes = self.classes or []
        if proba is None:
            proba = np.empty((rows, len(classes)))
        if proba.ndim != 2 or proba.shape[1] != len(classes):
            raise PredictFailed(
                f"the model returned probabilities of shape {list(proba.shape)} for "
                f"{len(classes)} classes ({_show(classes)})"
            )
        return {
            f"probability_{c}": pa.array(proba[:, k], pa.float64()) for k, c in enumerate(classes)
        }


def _label_type(classes: list[Any] | None, regression: bool) -> pa.DataType | None:
    if classes:
        return pa.array(classes).type
    return pa.float64() if regression else None


def _floats(array: pa.Array) -> np.ndarray:
    """A numeric or boolean column as float64, NaN where a value is missing."""
    if not pa.types.is_floating(array.type):
        array = array.cast(pa.float64(), safe=False)
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.float64)


def _error_records(
    table: pa.Table, cols: ColumnPlan, bad: dict[int, str], first_row: int
) -> list[dict[str, Any]]:
    if not bad:
        return []
    positions = sorted(bad)
    names = [n for n in cols.needed if n in table.column_names]
    inputs = table.select(names).take(pa.array(positions, pa.int64())).to_pylist()
    return [
        {"row": first_row + p, "input": row, "message": bad[p]}
        for p, row in zip(positions, inputs, strict=True)
    ]


def _show(values: list[Any]) -> str:
    text = ", ".join(map(str, values))
    return text if len(text) <= 100 else text[:97] + "..."
