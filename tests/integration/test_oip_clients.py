"""Real Open Inference Protocol clients against the REST data plane of a live server.

NVIDIA's ``tritonclient[http]`` speaks OIP v2 with the binary tensor extension: inputs as JSON or
binary, outputs asked for as either. Whatever the encoding, the answers must equal the model's
own predictions. (KServe's ``kserve`` package is not used: installing it pulls in the Kubernetes
client, cryptography and grpcio-tools, and downgrades pandas to 2.x and psutil to 5.9.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import cloche
from cloche.config import Settings
from tests.integration.conftest import ServerFactory

FEATURES = ["tenure", "spend", "visits", "age"]


@pytest.fixture
def triton(
    settings: Settings, sklearn_model_file: Path, start_server: ServerFactory
) -> Iterator[Any]:
    """A Triton HTTP client of a live server whose endpoint `churn` serves churn:1."""
    with cloche.Client(settings=settings) as sdk:
        sdk.models.upload(sklearn_model_file, name="churn")
        sdk.endpoints.create("churn")
        sdk.endpoints.deploy("churn", "churn:1")
    server = start_server()
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def rows(iris_like: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return iris_like[0][:7]


@pytest.fixture
def model(sklearn_model_file: Path) -> Any:
    return joblib.load(sklearn_model_file)


def _frame(rows: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=FEATURES)


def _matrix(rows: np.ndarray, *, binary: bool, datatype: str = "FP64") -> list[Any]:
    dtype = {"FP64": np.float64, "FP32": np.float32}[datatype]
    tensor = httpclient.InferInput("input", list(rows.shape), datatype)
    tensor.set_data_from_numpy(rows.astype(dtype), binary_data=binary)
    return [tensor]


def test_server_health_and_metadata_read_by_tritonclient(triton: Any) -> None:
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.is_model_ready("churn") and triton.is_model_ready("churn", "1")
    assert not triton.is_model_ready("nope")
    server = triton.get_server_metadata()
    assert server["name"] == "cloche" and "binary_tensor_data" in server["extensions"]
    meta = triton.get_model_metadata("churn")
    assert meta["name"] == "churn" and meta["versions"] == ["1"]
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [(f, "FP64") for f in FEATURES]
    assert {o["name"] for o in meta["outputs"]} == {"predict", "probabilities"}
    assert triton.get_model_metadata("churn", "1")["name"] == "churn"


@pytest.mark.parametrize("binary_in", [True, False], ids=["binary-in", "json-in"])
@pytest.mark.parametrize("binary_out", [True, False], ids=["binary-out", "json-out"])
def test_tritonclient_predictions_equal_the_models_own(
    triton: Any, model: Any, rows: np.ndarray, binary_in: bool, binary_out: bool
) -> None:
    outputs = [
        httpclient.InferRequestedOutput("predict", binary_data=binary_out),
        httpclient.InferRequestedOutput("probabilities", binary_data=binary_out),
    ]
    result = triton.infer(
        "churn", _matrix(rows, binary=binary_in), outputs=outputs, request_id="rq-1"
    )
    np.testing.assert_array_equal(result.as_numpy("predict"), model.predict(_frame(rows)))
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (len(rows), 3)
    np.testing.assert_allclose(probabilities, model.predict_proba(_frame(rows)), rtol=1e-12)
    response = result.get_response()
    assert response["id"] == "rq-1" and response["model_version"] == "1"


def test_only_the_requested_output_comes_back(triton: Any, model: Any, rows: np.ndarray) -> None:
    wanted = [httpclient.InferRequestedOutput("probabilities", binary_data=True)]
    result = triton.infer("churn", _matrix(rows, binary=True), outputs=wanted)
    assert result.as_numpy("predict") is None
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), model.predict_proba(_frame(rows)), rtol=1e-12
    )


def test_every_output_comes_back_when_none_is_named(
    triton: Any, model: Any, rows: np.ndarray
) -> None:
    result = triton.infer("churn", _matrix(rows, binary=True))
    np.testing.assert_array_equal(result.as_numpy("predict"), model.predict(_frame(rows)))
    assert result.as_numpy("probabilities").shape == (len(rows), 3)


@pytest.mark.parametrize("binary_in", [True, False], ids=["binary-in", "json-in"])
def test_one_tensor_per_feature_and_fp32_inputs(
    triton: Any, model: Any, rows: np.ndarray, binary_in: bool
) -> None:
    columns = []
    for j, name in enumerate(FEATURES):
        column = httpclient.InferInput(name, [len(rows)], "FP32")
        column.set_data_from_numpy(rows[:, j].astype(np.float32), binary_data=binary_in)
        columns.append(column)
    by_feature = triton.infer("churn", columns[::-1], model_version="1")  # any order
    as_matrix = triton.infer("churn", _matrix(rows, binary=binary_in, datatype="FP32"))
    expected = model.predict(_frame(rows.astype(np.float32).astype(np.float64)))
    np.testing.assert_array_equal(by_feature.as_numpy("predict"), expected)
    np.testing.assert_array_equal(as_matrix.as_numpy("predict"), expected)


def test_tritonclient_raises_on_errors_with_the_http_status(triton: Any, rows: np.ndarray) -> None:
    bad = httpclient.InferInput("input", [len(rows), 3], "FP64")
    bad.set_data_from_numpy(rows[:, :3].copy())
    with pytest.raises(InferenceServerException) as wrong_width:
        triton.infer("churn", [bad])
    assert wrong_width.value.status() == "422"
    with pytest.raises(InferenceServerException) as no_endpoint:
        triton.infer("nope", _matrix(rows, binary=True))
    assert no_endpoint.value.status() == "404"
    unknown = [httpclient.InferRequestedOutput("logits")]
    with pytest.raises(InferenceServerException) as no_output:
        triton.infer("churn", _matrix(rows, binary=True), outputs=unknown)
    assert no_output.value.status() == "422"


def test_tritonclient_shows_the_servers_error_message(triton: Any, rows: np.ndarray) -> None:
    bad = httpclient.InferInput("input", [len(rows), 3], "FP64")
    bad.set_data_from_numpy(rows[:, :3].copy())
    with pytest.raises(InferenceServerException) as error:
        triton.infer("churn", [bad])
    assert "each row must have 4 values" in str(error.value)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests_from_tritonclient_are_served(
    triton: Any, model: Any, rows: np.ndarray, algorithm: str
) -> None:
    result = triton.infer(
        "churn", _matrix(rows, binary=True), request_compression_algorithm=algorithm
    )
    np.testing.assert_array_equal(result.as_numpy("predict"), model.predict(_frame(rows)))
