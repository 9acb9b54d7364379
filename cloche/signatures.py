"""Model signatures: the input and output schema every model version carries.

A signature is plain data (JSON-serialisable through ``to_dict``/``from_dict``) so the store, the
API and later the data plane share one definition. Runtimes fill in what the model itself knows;
``from_table`` fills in the rest from a sample or the baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # Arrow is imported where a table is read, not whenever a signature is
    import pyarrow as pa

Task = Literal["classification", "regression", "unknown"]
InputKind = Literal["tabular", "tensor"]

# The dtype vocabulary: numpy-style names plus "string" and "category".
DTYPES = frozenset(
    {
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
        "string",
        "category",
        "datetime",
        "bytes",
    }
)


@dataclass(frozen=True)
class FieldSpec:
    """One named input or output: its dtype and shape (-1 for a free dimension)."""

    name: str
    dtype: str
    shape: tuple[int, ...] = (-1,)
    categories: tuple[Any, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}
        if self.categories is not None:
            out["categories"] = list(self.categories)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FieldSpec:
        cats = data.get("categories")
        return cls(
            name=str(data["name"]),
            dtype=str(data["dtype"]),
            shape=tuple(int(d) for d in data.get("shape", [-1])),
            categories=tuple(cats) if cats is not None else None,
        )


@dataclass(frozen=True)
class Signature:
    """Inputs, outputs, task and (for classifiers) the class labels of a model version.

    ``input_kind`` is "tabular" when each input is a named column (one value per row) and
    "tensor" when the model takes one or more n-dimensional arrays.
    """

    inputs: tuple[FieldSpec, ...] = ()
    outputs: tuple[FieldSpec, ...] = ()
    input_kind: InputKind = "tabular"
    task: Task = "unknown"
    classes: tuple[Any, ...] | None = None
    source: tuple[str, ...] = field(default=())

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.inputs]

    @property
    def is_empty(self) -> bool:
        return not self.inputs

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [f.to_dict() for f in self.inputs],
            "outputs": [f.to_dict() for f in self.outputs],
            "input_kind": self.input_kind,
            "task": self.task,
            "classes": _jsonable(list(self.classes)) if self.classes is not None else None,
            "source": list(self.source),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Signature:
        if not data:
            return cls()
        classes = data.get("classes")
        return cls(
            inputs=tuple(FieldSpec.from_dict(f) for f in data.get("inputs", [])),
            outputs=tuple(FieldSpec.from_dict(f) for f in data.get("outputs", [])),
            input_kind=data.get("input_kind", "tabular"),
            task=data.get("task", "unknown"),
            classes=tuple(classes) if classes is not None else None,
            source=tuple(data.get("source", [])),
        )

    def merged_with(self, other: Signature) -> Signature:
        """Fill what this signature lacks from ``other``; what the model knows wins."""
        sig = self
        if (not sig.inputs and other.inputs) or _names_for_unnamed(sig, other):
            sig = replace(sig, inputs=other.inputs, input_kind=other.input_kind)
        elif sig.inputs and other.inputs and sig.input_kind == "tabular":
            # The model may know names but not dtypes (e.g. "float64" everywhere); a sample
            # with the same names knows the real column types and categories.
            by_name = {f.name: f for f in other.inputs}
            if all(f.name in by_name for f in sig.inputs):
                sig = replace(
                    sig, inputs=tuple(_prefer_sample(f, by_name[f.name]) for f in sig.inputs)
                )
        if not sig.outputs and other.outputs:
            sig = replace(sig, outputs=other.outputs)
        if sig.task == "unknown" and other.task != "unknown":
            sig = replace(sig, task=other.task)
        if sig.classes is None and other.classes is not None:
            sig = replace(sig, classes=other.classes)
        return replace(sig, source=tuple(dict.fromkeys(sig.source + other.source)))


def _names_for_unnamed(model: Signature, sample: Signature) -> bool:
    """A model fitted on a bare array knows only its width; a sample of that width names it."""
    if model.input_kind != "tensor" or len(model.inputs) != 1 or sample.input_kind != "tabular":
        return False
    shape = model.inputs[0].shape
    return len(shape) == 2 and shape[1] == len(sample.inputs)


def _prefer_sample(from_model: FieldSpec, from_sample: FieldSpec) -> FieldSpec:
    return replace(from_model, dtype=from_sample.dtype, categories=from_sample.categories)


def _jsonable(values: list[Any]) -> list[Any]:
    out = []
    for v in values:
        item = getattr(v, "item", None)
        out.append(item() if callable(item) else v)
    return out


def dtype_of_arrow(arrow_type: pa.DataType) -> str:
    """The signature dtype for an Arrow column type."""
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        return "category"
    if pa.types.is_boolean(arrow_type):
        return "bool"
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
        return str(arrow_type.to_pandas_dtype().__name__)
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "string"
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return "datetime"
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return "bytes"
    return "string"


MAX_CATEGORIES = 50


def from_table(table: pa.Table, *, source: str = "sample") -> Signature:
    """A tabular input signature from a sample table (its column names and types)."""
    import pyarrow as pa

    fields = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        dtype = dtype_of_arrow(column.type)
        categories = None
        if dtype in ("category", "string"):
            uniques = column.unique()
            if pa.types.is_dictionary(uniques.type):
                uniques = uniques.dictionary_decode()
            values = [v for v in uniques.to_pylist() if v is not None]
            if len(values) <= MAX_CATEGORIES:
                categories = tuple(sorted(values, key=str))
        fields.append(FieldSpec(name=name, dtype=dtype, shape=(-1,), categories=categories))
    return Signature(inputs=tuple(fields), input_kind="tabular", source=(source,))
