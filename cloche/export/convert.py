"""Converting a loaded model to ONNX: scikit-learn through skl2onnx, XGBoost and LightGBM through
onnxmltools.

The graph takes what the bundle's server decodes from a request: one float tensor ``input`` of
shape [None, n_features] for numeric features, or, for scikit-learn pipelines that pick columns
by name (a ColumnTransformer) or take text, one [None, 1] input per signature feature, named after
it. Classifiers give a label tensor and a probabilities tensor (no ZipMap), the two outputs
cloche's ONNX runtime reads by role, so the converted model serves the same outputs as the
original.
"""

from __future__ import annotations

import functools
import json
import warnings
from typing import Any

from cloche.errors import ConversionFailed
from cloche.runtimes.base import LoadedModel, has_predict_proba, require
from cloche.runtimes.onnx import CLASSES_METADATA
from cloche.serving.inputs import NUMERIC
from cloche.signatures import Signature

CONVERTIBLE = ("sklearn", "xgboost", "lightgbm")
NATIVE_HINT = "pass --native to bundle the model in its own framework"
INPUT_NAME = "input"
_CLASS_LABEL_ATTRS = ("classlabels_ints", "classlabels_int64s", "classlabels_strings")


def to_onnx(model: LoadedModel, signature: Signature, *, framework: str, ref: str) -> Any:
    """An ``onnx.ModelProto`` computing what ``model`` computes; ConversionFailed if it can't."""
    if framework not in CONVERTIBLE:
        raise ConversionFailed(
            f"{ref} is a {framework} model; only scikit-learn, XGBoost and LightGBM models "
            "convert to ONNX",
            hint=NATIVE_HINT,
        )
    convert = {"sklearn": _sklearn, "xgboost": _xgboost, "lightgbm": _lightgbm}[framework]
    try:
        with warnings.catch_warnings():
            # Converters warn about opsets and deprecated options; none of it is the user's.
            warnings.simplefilter("ignore")
            proto = convert(model, signature)
    except ConversionFailed:
        raise
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        reason = lines[0][:300] if lines else type(exc).__name__
        raise ConversionFailed(
            f"{ref} ({framework}) cannot be converted to ONNX: {reason}", hint=NATIVE_HINT
        ) from exc
    if not has_predict_proba(model):
        _keep_label_only(proto)
    _record_classes(proto)
    return proto


def _record_classes(proto: Any) -> None:
    """Write the class labels into the model's metadata, where cloche's ONNX runtime reads them
    when the ``onnx`` package is not installed (a bundle's lean runtime has only onnxruntime,
    which cannot read graph attributes)."""
    for node in proto.graph.node:
        for attr in node.attribute:
            if attr.name in _CLASS_LABEL_ATTRS and (attr.ints or attr.strings):
                labels = list(attr.ints) or [s.decode() for s in attr.strings]
                entry = proto.metadata_props.add()
                entry.key, entry.value = CLASSES_METADATA, json.dumps(labels)
                return


def _sklearn(model: LoadedModel, signature: Signature) -> Any:
    skl2onnx = require("skl2onnx", extra="onnx", framework="ONNX conversion")
    types = require("skl2onnx.common.data_types", extra="onnx", framework="ONNX conversion")
    base = require("sklearn.base", extra="sklearn", framework="scikit-learn")
    estimator = model.estimator  # type: ignore[attr-defined]
    if _per_column(signature, estimator):
        initial = [
            (f.name, types.FloatTensorType([None, 1]))
            if f.dtype in NUMERIC
            else (f.name, types.StringTensorType([None, 1]))
            for f in signature.inputs
        ]
    else:
        initial = [(INPUT_NAME, types.FloatTensorType([None, _width(model, signature)]))]
    # ZipMap would turn probabilities into a list of dicts; the runtime wants one tensor.
    options = {id(estimator): {"zipmap": False}} if base.is_classifier(estimator) else None
    opset = min(ort_max_opset(), skl2onnx.get_latest_tested_opset_version())
    return skl2onnx.convert_sklearn(
        estimator, initial_types=initial, options=options, target_opset=opset
    )


def _xgboost(model: LoadedModel, signature: Signature) -> Any:
    _numeric_only(signature, "XGBoost")
    convert = require("onnxmltools.convert", extra="onnx", framework="ONNX conversion")
    booster = model.booster  # type: ignore[attr-defined]
    best = booster.attributes().get("best_iteration")
    # The runtime predicts with the early-stopping best iteration; convert just those trees.
    booster = booster[: int(best) + 1] if best is not None else booster.copy()
    booster.feature_names = None  # onnxmltools reads features only as f0, f1, ...
    booster.feature_types = None
    return convert.convert_xgboost(
        booster, initial_types=_tensor_input(model, signature), target_opset=_onnxmltools_opset()
    )


def _lightgbm(model: LoadedModel, signature: Signature) -> Any:
    _numeric_only(signature, "LightGBM")
    convert = require("onnxmltools.convert", extra="onnx", framework="ONNX conversion")
    return convert.convert_lightgbm(
        model.booster,  # type: ignore[attr-defined]
        initial_types=_tensor_input(model, signature),
        target_opset=_onnxmltools_opset(),
        zipmap=False,
    )


def _tensor_input(model: LoadedModel, signature: Signature) -> list[tuple[str, Any]]:
    types = require(
        "onnxmltools.convert.common.data_types", extra="onnx", framework="ONNX conversion"
    )
    return [(INPUT_NAME, types.FloatTensorType([None, _width(model, signature)]))]


def _per_column(signature: Signature, estimator: Any) -> bool:
    if signature.input_kind != "tabular" or not signature.inputs:
        return False
    text = any(f.dtype not in NUMERIC for f in signature.inputs)
    return text or _has_column_transformer(estimator)


def _has_column_transformer(estimator: Any) -> bool:
    """Whether a ColumnTransformer (which selects columns by name) sits anywhere inside."""
    if hasattr(estimator, "transformers_") or hasattr(estimator, "transformers"):
        return True
    children = [step for _, step in getattr(estimator, "steps", ())]
    children += [t for _, t in getattr(estimator, "transformer_list", ())]
    return any(_has_column_transformer(c) for c in children if c not in (None, "drop"))


def _numeric_only(signature: Signature, framework: str) -> None:
    text = [f.name for f in signature.inputs if f.dtype not in NUMERIC]
    if signature.input_kind == "tabular" and text:
        raise ConversionFailed(
            f"{framework} models with text or categorical features ({', '.join(text)}) do not "
            "convert to ONNX",
            hint=NATIVE_HINT,
        )


def _width(model: LoadedModel, signature: Signature) -> int:
    """Features per row: from the signature, else from what the model itself knows."""
    for sig in (signature, model.signature()):
        if sig.input_kind == "tabular" and sig.inputs:
            return len(sig.inputs)
        if sig.inputs and len(sig.inputs[0].shape) == 2 and sig.inputs[0].shape[1] > 0:
            return sig.inputs[0].shape[1]
    raise ConversionFailed(
        "the model's signature does not say how many features it takes",
        hint="upload it with --sample, or pass --native",
    )


def _keep_label_only(proto: Any) -> None:
    """Drop the scores a converter adds to a classifier that has no predict_proba.

    cloche's ONNX runtime would serve a second float output as probabilities, which the original
    does not give (an SVC without probability=True: its scores are not probabilities).
    """
    outputs = list(proto.graph.output)
    if len(outputs) < 2:
        return
    label = next((o for o in outputs if o.type.tensor_type.elem_type != 1), outputs[0])  # 1: float
    del proto.graph.output[:]
    proto.graph.output.append(label)


def _onnxmltools_opset() -> int:
    onnx_ex = require(
        "onnxmltools.convert.common.onnx_ex", extra="onnx", framework="ONNX conversion"
    )
    return min(ort_max_opset(), int(onnx_ex.get_maximum_opset_supported()))


@functools.cache
def ort_max_opset() -> int:
    """The newest default-domain opset the installed onnxruntime runs (probed once)."""
    onnx = require("onnx", extra="onnx", framework="ONNX")
    ort = require("onnxruntime", extra="onnx", framework="ONNX")
    helper, tensor = onnx.helper, onnx.TensorProto
    for opset in range(onnx.defs.onnx_opset_version(), 6, -1):
        graph = helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])],
            "probe",
            [helper.make_tensor_value_info("x", tensor.FLOAT, [None])],
            [helper.make_tensor_value_info("y", tensor.FLOAT, [None])],
        )
        # The probe is about the opset: its IR version is capped where onnxruntime 1.16+ reads it.
        probe = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        probe.ir_version = min(probe.ir_version, 10)
        try:
            ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
        except Exception:
            continue
        return opset
    raise ConversionFailed("the installed onnxruntime runs no ONNX opset this exporter knows")
