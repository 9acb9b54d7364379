from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from cloche.errors import CorruptArtifact
from cloche.runtimes import get_runtime, has_predict_proba
from cloche.signatures import FieldSpec


def _convert(estimator: Any, X: Any, path: Path, **options: Any) -> ort.InferenceSession:
    proto = to_onnx(estimator, X[:1], options={id(estimator): options} if options else None)
    path.write_bytes(proto.SerializeToString())
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture
def X32(tabular) -> np.ndarray:
    return tabular.X.astype(np.float32)


def test_classifier_matches_onnxruntime(X32, tabular, artifact_dir):
    fitted = LogisticRegression(max_iter=500).fit(X32, tabular.y_multi)
    session = _convert(fitted, X32, artifact_dir / "model.onnx", zipmap=False)
    label, proba = session.run(None, {"X": X32})
    model = get_runtime("onnx").load(artifact_dir)

    assert model.framework == "onnx"
    np.testing.assert_array_equal(model.predict(X32), label)
    np.testing.assert_array_equal(model.predict_proba(X32), proba)
    # float64 rows and DataFrames are cast to the graph's float32.
    np.testing.assert_array_equal(model.predict_proba(tabular.frame), proba)


def test_zipmap_probabilities_come_back_as_an_array_in_class_order(X32, tabular, artifact_dir):
    fitted = LogisticRegression(max_iter=500).fit(X32, tabular.y_multi)
    session = _convert(fitted, X32, artifact_dir / "model.onnx")
    label, rows = session.run(None, {"X": X32})
    model = get_runtime("onnx").load(artifact_dir)

    expected = np.array([[row[c] for c in (0, 1, 2)] for row in rows], dtype=np.float32)
    np.testing.assert_array_equal(model.predict(X32), label)
    np.testing.assert_array_equal(model.predict_proba(X32), expected)


def test_regressor_output_variable_is_squeezed_to_one_value_per_row(X32, tabular, artifact_dir):
    fitted = LinearRegression().fit(X32, tabular.y_reg)
    session = _convert(fitted, X32, artifact_dir / "model.onnx")
    (variable,) = session.run(None, {"X": X32})
    model = get_runtime("onnx").load(artifact_dir)

    assert variable.shape == (200, 1)
    np.testing.assert_array_equal(model.predict(X32), variable[:, 0])
    assert not has_predict_proba(model)


def test_classifier_signature_from_the_graph(X32, tabular, artifact_dir):
    fitted = LogisticRegression(max_iter=500).fit(X32, tabular.y_multi)
    _convert(fitted, X32, artifact_dir / "model.onnx", zipmap=False)
    sig = get_runtime("onnx").load(artifact_dir).signature()

    assert sig.input_kind == "tensor"
    assert sig.inputs == (FieldSpec("X", "float32", (-1, 4)),)
    assert sig.task == "classification"
    assert sig.classes == (0, 1, 2)
    assert sig.outputs == (
        FieldSpec("predict", "int64", (-1,)),
        FieldSpec("probabilities", "float32", (-1, 3)),
    )
    assert sig.source == ("model",)


def test_regressor_signature_from_the_graph(X32, tabular, artifact_dir):
    _convert(LinearRegression().fit(X32, tabular.y_reg), X32, artifact_dir / "model.onnx")
    sig = get_runtime("onnx").load(artifact_dir).signature()

    assert sig.task == "regression"
    assert sig.classes is None
    assert sig.outputs == (FieldSpec("predict", "float32", (-1,)),)


def test_string_labels_are_the_classes(X32, tabular, artifact_dir):
    labels = np.array(["no", "yes"])[tabular.y_binary]
    fitted = LogisticRegression().fit(X32, labels)
    session = _convert(fitted, X32, artifact_dir / "model.onnx", zipmap=False)
    model = get_runtime("onnx").load(artifact_dir)

    np.testing.assert_array_equal(model.predict(X32), session.run(None, {"X": X32})[0])
    assert model.signature().classes == ("no", "yes")
    assert model.signature().outputs[0].dtype == "string"


def test_one_input_per_column_takes_a_dataframe(churn, artifact_dir):
    frame, y = churn
    frame = frame.astype({"tenure": np.float32, "spend": np.float32})
    prep = ColumnTransformer(
        [
            ("city", OneHotEncoder(handle_unknown="ignore"), ["city"]),
            ("num", StandardScaler(), ["tenure", "spend"]),
        ]
    )
    fitted = Pipeline([("prep", prep), ("clf", LogisticRegression(max_iter=500))]).fit(frame, y)
    session = _convert(fitted, frame, artifact_dir / "model.onnx", zipmap=False)
    feed = {c: frame[[c]].to_numpy() for c in ("tenure", "spend")}
    feed["city"] = frame[["city"]].to_numpy(dtype=object)
    label, proba = session.run(None, feed)
    model = get_runtime("onnx").load(artifact_dir)

    np.testing.assert_array_equal(model.predict(frame), label)
    np.testing.assert_array_equal(model.predict_proba(frame), proba)
    np.testing.assert_array_equal(model.predict_proba(frame.to_numpy(dtype=object)), proba)
    sig = model.signature()
    assert sig.input_kind == "tabular"
    assert sig.inputs == (
        FieldSpec("tenure", "float32"),
        FieldSpec("spend", "float32"),
        FieldSpec("city", "string"),
    )


def _add_graph(weight: TensorProto) -> onnx.GraphProto:
    return helper.make_graph(
        [helper.make_node("Add", ["X", "W"], ["Y"])],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 4])],
        initializer=[weight],
    )


def test_external_data_outside_the_model_folder_is_refused(artifact_dir):
    weight = TensorProto(name="W", dims=[4], data_type=TensorProto.FLOAT)
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.add(key="location", value="../outside.bin")
    proto = helper.make_model(_add_graph(weight), opset_imports=[helper.make_opsetid("", 17)])
    (artifact_dir / "model.onnx").write_bytes(proto.SerializeToString())

    with pytest.raises(CorruptArtifact, match="external data outside its folder"):
        get_runtime("onnx").load(artifact_dir)


def test_plain_tensor_model_returns_its_first_output(artifact_dir):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(proto, artifact_dir / "relu.onnx")
    model = get_runtime("onnx").load(artifact_dir)

    X = np.array([[-1.0, 0.5, 2.0]])
    np.testing.assert_array_equal(model.predict(X), np.array([[0.0, 0.5, 2.0]], dtype=np.float32))
    assert model.signature().task == "unknown"
    assert model.signature().inputs == (FieldSpec("x", "float32", (-1, 3)),)


def test_truncated_model_raises_corrupt_artifact_naming_it(X32, tabular, artifact_dir, truncate):
    _convert(LinearRegression().fit(X32, tabular.y_reg), X32, artifact_dir / "churn.onnx")
    truncate(artifact_dir / "churn.onnx")

    with pytest.raises(CorruptArtifact, match=r"churn\.onnx is not an ONNX model"):
        get_runtime("onnx").load(artifact_dir)


def test_a_pickle_named_onnx_is_not_an_onnx_model(tabular, artifact_dir):
    joblib.dump(LinearRegression().fit(tabular.X, tabular.y_reg), artifact_dir / "model.onnx")

    with pytest.raises(CorruptArtifact, match=r"model\.onnx is not an ONNX model"):
        get_runtime("onnx").load(artifact_dir)


def test_external_data_beside_the_model_loads(artifact_dir):
    weight = helper.make_tensor(
        "W", TensorProto.FLOAT, [4], np.arange(4, dtype=np.float32).tobytes(), raw=True
    )
    proto = helper.make_model(_add_graph(weight), opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(
        proto,
        str(artifact_dir / "model.onnx"),
        save_as_external_data=True,
        location="weights.bin",
        size_threshold=0,
    )
    assert (artifact_dir / "weights.bin").exists()
    model = get_runtime("onnx").load(artifact_dir)

    np.testing.assert_array_equal(
        model.predict(np.ones((2, 4))), np.tile([1.0, 2.0, 3.0, 4.0], (2, 1))
    )
