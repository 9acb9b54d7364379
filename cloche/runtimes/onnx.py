"""ONNX runtime: one onnxruntime CPU session per model (.onnx)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np

from cloche.errors import InvalidInput, MissingDependency
from cloche.runtimes import _common, _guards
from cloche.runtimes.base import require
from cloche.signatures import FieldSpec, InputKind, Signature, Task

SUFFIXES = (".onnx",)
EXPECTED = "an ONNX model"
ELEMENT_DTYPES = {"float": "float32", "double": "float64", "string": "string"}
# Where `cloche export` records class labels, for runtimes without the onnx package.
CLASSES_METADATA = "cloche.classes"
_CLASS_LABEL_ATTRS = ("classlabels_ints", "classlabels_int64s", "classlabels_strings")


def element_dtype(onnx_type: str) -> str:
    """The signature dtype for an onnxruntime type string such as ``tensor(float)``."""
    inner = onnx_type[len("tensor(") : -1] if onnx_type.startswith("tensor(") else "float"
    return ELEMENT_DTYPES.get(inner, inner)


def _shape(dims: Any) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in dims or ())


class OnnxModel:
    framework = "onnx"

    def __init__(self, session: Any, classes: tuple[Any, ...] | None) -> None:
        self.session = session
        self.classes = classes
        self._inputs = session.get_inputs()
        self._label, self._proba = _output_roles(session.get_outputs(), classes)

    def _feed(self, X: Any) -> dict[str, np.ndarray]:
        if len(self._inputs) == 1:
            inp = self._inputs[0]
            return {inp.name: _as_input(_common.to_numpy(X), inp)}
        # Several named inputs (e.g. a converted ColumnTransformer): one column each.
        if _common.is_frame(X):
            return {i.name: _as_input(X[i.name].to_numpy(), i) for i in self._inputs}
        arr = np.asarray(X)
        if arr.ndim != 2 or arr.shape[1] != len(self._inputs):
            raise InvalidInput(
                f"this ONNX model takes {len(self._inputs)} inputs, one column each "
                f"({', '.join(i.name for i in self._inputs)}); got an array of shape {arr.shape}"
            )
        return {i.name: _as_input(arr[:, j], i) for j, i in enumerate(self._inputs)}

    def predict(self, X: Any) -> np.ndarray:
        out = np.asarray(self.session.run([self._label.name], self._feed(X))[0])
        return out[:, 0] if out.ndim == 2 and out.shape[1] == 1 else out

    def signature(self) -> Signature:
        inputs = [FieldSpec(i.name, element_dtype(i.type), _shape(i.shape)) for i in self._inputs]
        kind: InputKind = "tensor"
        if len(inputs) > 1 and all(f.shape[1:] in ((), (1,)) for f in inputs):
            inputs, kind = [FieldSpec(f.name, f.dtype) for f in inputs], "tabular"
        shape = _shape(self._label.shape)
        if len(shape) == 2 and shape[1] == 1:
            shape = shape[:1]
        outputs = [FieldSpec("predict", element_dtype(self._label.type), shape)]
        task: Task = "unknown"
        if self.classes is not None:
            task = "classification"
            if self._proba is not None:
                outputs.append(FieldSpec("probabilities", "float32", (-1, len(self.classes))))
        elif len(self.session.get_outputs()) == 1 and outputs[0].dtype.startswith("float"):
            task = "regression" if len(shape) == 1 else "unknown"
        return Signature(
            tuple(inputs), tuple(outputs), kind, task, classes=self.classes, source=("model",)
        )


class OnnxClassifier(OnnxModel):
    def predict_proba(self, X: Any) -> np.ndarray:
        out = self.session.run([self._proba.name], self._feed(X))[0]
        if isinstance(out, list):
            # ZipMap output: one {class: probability} dict per row.
            classes = self.classes or ()
            return np.array([[row[c] for c in classes] for row in out], dtype=np.float32)
        return np.asarray(out)


def _output_roles(outputs: list[Any], classes: tuple[Any, ...] | None) -> tuple[Any, Any]:
    """The outputs behind predict and predict_proba (None when there are no probabilities)."""
    if classes is None:
        return outputs[0], None
    # skl2onnx classifiers emit (label, probabilities); the label is the non-float tensor.
    labels = [
        o
        for o in outputs
        if o.type.startswith("tensor(") and not element_dtype(o.type).startswith("float")
    ]
    label = labels[0] if labels else outputs[0]
    rest = [o for o in outputs if o is not label]
    return label, rest[0] if rest else None


def _as_input(values: np.ndarray, inp: Any) -> np.ndarray:
    dtype = element_dtype(inp.type)
    arr = values.astype(str).astype(object) if dtype == "string" else values.astype(dtype)
    rank = len(inp.shape or ())
    if rank == 2 and arr.ndim == 1:
        return arr.reshape(-1, 1)
    if rank == 1 and arr.ndim == 2 and arr.shape[1] == 1:
        return arr[:, 0]
    return arr


def _class_labels(proto: Any) -> tuple[Any, ...] | None:
    for node in proto.graph.node:
        for attr in node.attribute:
            if attr.name in _CLASS_LABEL_ATTRS and (attr.ints or attr.strings):
                return tuple(attr.ints) or tuple(s.decode() for s in attr.strings)
    return None


class OnnxRuntime:
    name = "onnx"
    extra = "onnx"

    def load(self, artifact_dir: Path) -> OnnxModel:
        ort = require("onnxruntime", extra=self.extra, framework="ONNX")
        path = _common.model_file(artifact_dir, SUFFIXES)
        classes: tuple[Any, ...] | None = None
        if _has_onnx():
            classes = _read_proto(path)
        try:
            options = ort.SessionOptions()
            options.log_severity_level = 3  # errors only: warnings would flood the server log
            session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise _common.corrupt(path, EXPECTED, exc) from exc
        if not _has_onnx():
            classes = _classes_from_metadata(session, path)
        has_proba = _output_roles(session.get_outputs(), classes)[1] is not None
        return (OnnxClassifier if has_proba else OnnxModel)(session, classes)


def _has_onnx() -> bool:
    return importlib.util.find_spec("onnx") is not None


def _read_proto(path: Path) -> tuple[Any, ...] | None:
    """The class labels, after refusing external data that points outside the model's folder."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise _common.corrupt(path, EXPECTED, exc) from exc
    _guards.check_onnx_external_data(proto, path)
    return _class_labels(proto)


def _classes_from_metadata(session: Any, path: Path) -> tuple[Any, ...] | None:
    """Without the ``onnx`` package (an edge bundle's lean runtime), the class labels that
    `cloche export` wrote into the model's metadata. Such a model's bytes were checked against
    the bundle's manifest before this loads it, which stands in for the external-data check."""
    found = session.get_modelmeta().custom_metadata_map.get(CLASSES_METADATA)
    if found is None:
        if len(session.get_outputs()) > 1:  # labels and probabilities: classes are needed
            raise MissingDependency(
                f"{path.name} records no class labels, and reading them needs the 'onnx' "
                "package, which is not installed",
                hint="pip install onnx, or export the model again with this cloche",
            )
        return None
    try:
        classes = json.loads(found)
    except ValueError as exc:
        raise _common.corrupt(path, EXPECTED, exc) from exc
    return tuple(classes) if isinstance(classes, list) else None
