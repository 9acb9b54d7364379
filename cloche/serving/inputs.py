"""Turning decoded request rows or columns into the model's input, checked against its signature.

The fast path is one ``numpy.asarray`` call on well-formed numeric rows; only when it fails do we
walk the rows to name the field and the expectation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cloche.errors import InvalidInput
from cloche.signatures import FieldSpec, Signature

NUMERIC = frozenset(
    {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
    | {"float16", "float32", "float64"}
)
TEXT = frozenset({"string", "category", "datetime", "bytes"})
CHUNK_ROWS = 50_000


@dataclass(frozen=True)
class InputSpec:
    """What a deployed model accepts, precomputed once per deployment from its signature."""

    names: tuple[str, ...]
    dtypes: tuple[str, ...]
    width: int | None  # features per row; None when the signature does not say
    all_numeric: bool
    tensor_dtype: str

    @classmethod
    def from_signature(cls, signature: Signature) -> InputSpec:
        inputs = signature.inputs
        if signature.input_kind == "tensor" or not inputs:
            first = inputs[0] if inputs else FieldSpec("input", "float64", (-1, -1))
            width = first.shape[1] if len(first.shape) == 2 and first.shape[1] > 0 else None
            dtype = first.dtype if first.dtype in NUMERIC else "float64"
            return cls((), (), width, True, dtype)
        names = tuple(f.name for f in inputs)
        dtypes = tuple(f.dtype for f in inputs)
        numeric = all(d in NUMERIC for d in dtypes)
        return cls(names, dtypes, len(names), numeric, "float64")


def rows_to_input(rows: Any, spec: InputSpec) -> np.ndarray:
    """A list of rows (lists by position, or objects by feature name) as a 2-D array."""
    if not isinstance(rows, list):
        raise InvalidInput('"instances" must be a list of rows', hint='send {"instances": [[...]]}')
    if not rows:
        raise InvalidInput('"instances" is empty', hint="send at least one row")
    if isinstance(rows[0], dict):
        rows = _dict_rows(rows, spec)
    if spec.all_numeric:
        try:
            array = as_array(rows, spec.tensor_dtype)
        except (ValueError, TypeError, OverflowError):
            _explain_bad_rows(rows, spec)
            # No single row is wrong, so together they are: rows of different lengths or depths.
            raise InvalidInput(
                "the rows do not form a table: they differ in length or nesting",
                hint="send one flat list of feature values per row, all of the same length",
            ) from None
        _check_shape(array, spec)
        return array
    _explain_bad_rows(rows, spec)
    array = np.empty((len(rows), len(spec.names)), dtype=object)
    array[:] = rows
    return array


def as_array(items: list[Any], dtype: Any, chunk: int = CHUNK_ROWS) -> np.ndarray:
    """``np.asarray(items)``; a long list in pieces of ``chunk`` items, so that a decoding
    thread lets the event loop have the GIL between them (one asarray call holds it for about
    a second per million rows)."""
    if len(items) <= chunk:
        return np.asarray(items, dtype=dtype)
    parts = [np.asarray(items[i : i + chunk], dtype=dtype) for i in range(0, len(items), chunk)]
    return np.concatenate(parts)


def _dict_rows(rows: list[Any], spec: InputSpec) -> list[list[Any]]:
    if not spec.names:
        raise InvalidInput(
            "this model takes rows as lists of numbers, not objects: it has no feature names",
            hint='send {"instances": [[1.0, 2.0, ...]]}',
        )
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InvalidInput(f"instances[{i}] must be an object like instances[0]")
        try:
            out.append([row[name] for name in spec.names])
        except KeyError as missing:
            raise InvalidInput(
                f"instances[{i}] is missing feature {missing.args[0]!r}",
                hint=f"each row needs: {', '.join(spec.names)}",
            ) from None
    return out


def _check_shape(array: np.ndarray, spec: InputSpec) -> None:
    if array.ndim != 2:
        raise InvalidInput(
            f"rows must form a 2-D table, got an array of shape {list(array.shape)}",
            hint="send one list of feature values per row",
        )
    if spec.width is not None and array.shape[1] != spec.width:
        raise InvalidInput(
            f"each row must have {spec.width} values, got {array.shape[1]}",
            hint=f"features in order: {', '.join(spec.names)}" if spec.names else None,
        )


def _explain_bad_rows(rows: Sequence[Any], spec: InputSpec) -> None:
    """Raise InvalidInput naming the first bad row and field; return if all rows are fine."""
    width = spec.width
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise InvalidInput(f"instances[{i}] must be a list of feature values")
        if width is not None and len(row) != width:
            raise InvalidInput(
                f"instances[{i}] has {len(row)} values; the model takes {width}",
                hint=f"features in order: {', '.join(spec.names)}" if spec.names else None,
            )
        for j, value in enumerate(row):
            dtype = spec.dtypes[j] if j < len(spec.dtypes) else spec.tensor_dtype
            if not _fits(value, dtype):
                name = spec.names[j] if j < len(spec.names) else f"[{j}]"
                raise InvalidInput(
                    f"instances[{i}] feature {name!r} must be {_kind(dtype)}, "
                    f"got {type(value).__name__} {_show(value)}"
                )


def _fits(value: Any, dtype: str) -> bool:
    if value is None:
        return True  # a missing value; models that cannot take NaN say so themselves
    if dtype in TEXT:
        return isinstance(value, str)
    return isinstance(value, int | float)  # bool is an int: True reads as 1


def _kind(dtype: str) -> str:
    return "a string" if dtype in TEXT else f"a number ({dtype})"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
