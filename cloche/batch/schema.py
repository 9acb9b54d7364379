"""Which input columns a batch job reads, checked against the model's signature before scoring.

``check_input`` looks at every input file's columns (and, for CSV and JSON lines, a first batch of
values) and raises one ``BatchSchemaMismatch`` listing every missing and mistyped column. Its
result, a ``ColumnPlan``, says what to read and which Arrow type each column is coerced to, so
that every chunk's output has the same schema. ``coerce`` does that per batch: a value that does
not convert is set to null and its position reported, which makes its row a bad row, not a failed
job.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from cloche.batch.spec import JobSpec
from cloche.errors import BatchSchemaMismatch, InvalidInput
from cloche.signatures import Signature

NUMERIC = frozenset(
    {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
    | {"float16", "float32", "float64"}
)
TEXT = frozenset({"string", "category"})
# Spellings a CSV (or a JSON string) uses for "no value": null, not a bad value, in a typed column.
NULL_SPELLINGS = ("", "NA", "N/A", "n/a", "NULL", "null", "None", "NaN", "nan", "#N/A")
# A column the JSON lines reader adds when it falls back to parsing line by line: the reason a
# line could not be read (null for good lines). The scorer turns it into bad rows.
READ_ERROR_COLUMN = "_cloche_read_error"
OUTPUT_NAMES = ("row", "prediction")
_CAST_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)


@dataclass(frozen=True)
class ColumnPlan:
    """The columns a job reads: the model's features in model order, the id and passthrough."""

    features: tuple[str, ...]
    dtypes: tuple[str, ...]  # the signature dtype of each feature
    tensor: bool  # the model takes one 2-D array rather than named columns
    tensor_dtype: str = "float64"
    id_column: str | None = None
    passthrough: tuple[str, ...] = ()
    read_schema: pa.Schema | None = None  # the type each needed column is coerced to

    @property
    def needed(self) -> list[str]:
        extra = [self.id_column] if self.id_column else []
        return list(dict.fromkeys([*self.features, *extra, *self.passthrough]))

    @property
    def all_numeric(self) -> bool:
        return self.tensor or all(d in NUMERIC or d == "bool" for d in self.dtypes)

    def to_dict(self) -> dict[str, Any]:
        schema = None
        if self.read_schema is not None:
            schema = base64.b64encode(self.read_schema.serialize().to_pybytes()).decode()
        return {
            "features": list(self.features),
            "dtypes": list(self.dtypes),
            "tensor": self.tensor,
            "tensor_dtype": self.tensor_dtype,
            "id_column": self.id_column,
            "passthrough": list(self.passthrough),
            "read_schema": schema,  # Arrow IPC, so any column type survives the round trip
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnPlan:
        raw = data.get("read_schema")
        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(raw))) if raw else None
        return cls(
            features=tuple(data["features"]),
            dtypes=tuple(data["dtypes"]),
            tensor=bool(data["tensor"]),
            tensor_dtype=data.get("tensor_dtype", "float64"),
            id_column=data.get("id_column"),
            passthrough=tuple(data.get("passthrough", ())),
            read_schema=schema,
        )


def target_type(dtype: str) -> pa.DataType | None:
    """The Arrow type a feature of signature dtype ``dtype`` is read as (None: as it comes)."""
    if dtype == "bool":
        return pa.bool_()
    if dtype in NUMERIC:
        return pa.float64()  # what the serving path gives models too; NaN marks a missing value
    if dtype in TEXT:
        return pa.string()
    return None


def columns_for(signature: Signature, spec: JobSpec, schema: pa.Schema | None) -> ColumnPlan:
    """The features of ``signature``; for a tensor model, the numeric columns of ``schema``."""
    keys = (spec.id_column, *spec.passthrough)
    passthrough = tuple(p for p in dict.fromkeys(spec.passthrough) if p != spec.id_column)
    if signature.input_kind == "tabular" and signature.inputs:
        names = tuple(f.name for f in signature.inputs)
        dtypes = tuple(f.dtype for f in signature.inputs)
        return ColumnPlan(names, dtypes, False, "float64", spec.id_column, passthrough)
    first = signature.inputs[0] if signature.inputs else None
    dtype = first.dtype if first is not None and first.dtype in NUMERIC else "float64"
    width = first.shape[1] if first is not None and len(first.shape) == 2 else -1
    found = [] if schema is None else [f.name for f in schema if _numeric_type(f.type)]
    features = tuple(n for n in found if n not in keys)
    if schema is not None and width > 0 and len(features) != width:
        raise BatchSchemaMismatch(
            f"the model takes {width} numeric columns; the input has {len(features)} "
            f"(besides the id and passthrough columns): {_listing(features)}",
            hint="give an input whose numeric columns are exactly the model's features, in order",
        )
    return ColumnPlan(features, (dtype,) * len(features), True, dtype, spec.id_column, passthrough)


def check_input(
    samples: Sequence[tuple[str, pa.Schema, pa.Table | None]],
    fmt: str,
    signature: Signature,
    spec: JobSpec,
) -> ColumnPlan:
    """The ColumnPlan for ``samples`` (file, schema, first batch); raise on any column problem."""
    plan = columns_for(signature, spec, samples[0][1])
    _check_output_names(plan)
    failing = [
        (f, p) for f, schema, sample in samples if (p := _problems(plan, schema, sample, fmt))
    ]
    if failing:
        file, problems = failing[0]
        more = f" (and {len(failing) - 1} more files)" if len(failing) > 1 else ""
        wanted = ", ".join(f"{n} {d}" for n, d in zip(plan.features, plan.dtypes, strict=True))
        raise BatchSchemaMismatch(
            f"{file}{more} does not match the model's inputs: {'; '.join(problems)}",
            hint=f"the model reads: {_clip(wanted)}",
        )
    return _with_read_schema(plan, samples[0][1])


def _problems(plan: ColumnPlan, schema: pa.Schema, sample: pa.Table | None, fmt: str) -> list[str]:
    names = set(schema.names)
    out = []
    missing = [c for c in plan.features if c not in names]
    if missing:
        out.append(f"missing columns: {_listing(missing)}")
    keys = [c for c in (plan.id_column, *plan.passthrough) if c and c not in names]
    if keys:
        out.append(f"missing id/passthrough columns: {_listing(keys)}")
    wrong = []
    for name, dtype in zip(plan.features, plan.dtypes, strict=True):
        if name in names:
            column = sample.column(name) if sample is not None else None
            found = _mistyped(dtype, schema.field(name).type, column, fmt)
            if found:
                wrong.append(f"{name} (expected {dtype}, found {found})")
    if wrong:
        out.append(f"wrong types: {_listing(wrong)}")
    return out


def _mistyped(dtype: str, found: pa.DataType, column: Any, fmt: str) -> str | None:
    """How ``found`` fails a feature of ``dtype`` (None: it does not)."""
    text_format = fmt in ("csv", "jsonl")
    if pa.types.is_null(found):
        return None
    if dtype in NUMERIC or dtype == "bool":
        if _numeric_type(found) or pa.types.is_boolean(found):
            return None
        if text_format and _is_text(found) and column is not None:
            # A CSV column is text; it is mistyped only if no value of the first batch converts.
            converted, bad = coerce(column, target_type(dtype) or pa.float64())
            if converted.null_count < len(converted) or not bad:
                return None
            return f"{found}, e.g. {column[bad[0]].as_py()!r}"
        return str(found)
    if dtype in TEXT:
        if _is_text(found) or pa.types.is_dictionary(found):
            return None
        return None if text_format and not pa.types.is_nested(found) else str(found)
    return None  # datetime and bytes features go to the model as they are read


def _with_read_schema(plan: ColumnPlan, schema: pa.Schema) -> ColumnPlan:
    fields = []
    for name in plan.needed:
        found = schema.field(name).type
        wanted = None
        if name in plan.features:
            wanted = target_type(plan.dtypes[plan.features.index(name)])
            wanted = pa.float64() if plan.tensor else wanted
        if wanted is None:  # id and passthrough keep the type of the first file
            wanted = pa.string() if pa.types.is_null(found) else found
            wanted = wanted.value_type if pa.types.is_dictionary(wanted) else wanted
        fields.append(pa.field(name, wanted))
    return replace(plan, read_schema=pa.schema(fields))


def _check_output_names(plan: ColumnPlan) -> None:
    taken = OUTPUT_NAMES[1:] if plan.id_column else OUTPUT_NAMES
    for name in (plan.id_column, *plan.passthrough):
        if name and (name in taken or name.startswith("probability_")):
            raise InvalidInput(
                f"the input column {name!r} cannot be copied to the output: "
                "the output has a column of that name",
                hint="output columns are row (without --id-column), prediction, probability_*",
            )


def coerce(array: pa.Array | pa.ChunkedArray, target: pa.DataType) -> tuple[pa.Array, list[int]]:
    """``array`` as ``target``, and the positions of values that do not convert (now null)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if array.type == target:
        return array, []
    if _is_text(array.type) and not _is_text(target):
        array = pc.utf8_trim_whitespace(array)
        missing = pc.is_in(array, value_set=_null_spellings())
        array = pc.if_else(missing, pa.nulls(len(array), array.type), array)
    # Integers to floats lose precision past 2**53; a model reading float64 accepts that.
    safe = not (_numeric_type(array.type) and pa.types.is_floating(target))
    bad: list[int] = []
    return _cast_isolating(array, target, safe, 0, bad), bad


def _cast_isolating(
    array: pa.Array, target: pa.DataType, safe: bool, at: int, bad: list[int]
) -> pa.Array:
    """Cast, halving on failure to find the values that do not convert: O(bad x log n) casts."""
    try:
        return pc.cast(array, target, safe=safe)
    except _CAST_ERRORS:
        if len(array) == 1:
            bad.append(at)
            return pa.nulls(1, target)
    mid = len(array) // 2
    left = _cast_isolating(array.slice(0, mid), target, safe, at, bad)
    right = _cast_isolating(array.slice(mid), target, safe, at + mid, bad)
    return pa.concat_arrays([left, right])


@functools.cache
def _null_spellings() -> pa.Array:
    # Built on first use, not at import: pa.array imports pandas, which the parent process of a
    # job (which only coordinates) has no use for.
    return pa.array(NULL_SPELLINGS, pa.string())


def _numeric_type(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _listing(names: Sequence[str]) -> str:
    return _clip(", ".join(names)) if names else "(none)"


def _clip(text: str, limit: int = 600) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
