"""Requests with more rows than a batch, on a real server: served whole, or 413 past the cap."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest

import cloche
from tests.integration.conftest import LiveServer, ServerFactory

FEATURES = ["tenure", "spend", "visits", "age"]
ROWS = 40_000  # 625 model calls at the default max_batch_size of 64; once a 503 on any server


@pytest.fixture
def deployed(settings, sklearn_model_file: Path) -> cloche.Client:
    sdk = cloche.Client(settings=settings)
    sdk.models.upload(sklearn_model_file, name="churn")
    sdk.endpoints.create("churn")
    # A long deadline: the server shares this process's GIL with the test's client threads.
    sdk.endpoints.deploy("churn", "churn:1", timeout_ms=60_000)
    return sdk


@pytest.fixture
def server(deployed: cloche.Client, start_server: ServerFactory) -> LiveServer:
    return start_server(serving={"max_request_rows": 50_000})


@pytest.fixture
def http(server: LiveServer):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture
def large() -> np.ndarray:
    return np.random.default_rng(7).normal(size=(ROWS, len(FEATURES)))


def _model_says(model_file: Path, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    model = joblib.load(model_file)
    frame = pd.DataFrame(X, columns=FEATURES)
    return model.predict(frame), model.predict_proba(frame)


def test_a_v1_request_of_40000_rows_gets_the_models_own_predictions(
    http, large, sklearn_model_file
) -> None:
    r = http.post("/v1/models/churn:predict", json={"instances": large.tolist()})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == _model_says(sklearn_model_file, large)[0].tolist()


def test_an_oip_v2_request_of_40000_rows_gets_the_models_own_outputs(
    http, large, sklearn_model_file
) -> None:
    tensor = {
        "name": "x",
        "shape": list(large.shape),
        "datatype": "FP64",
        "data": large.ravel().tolist(),
    }
    r = http.post("/v2/models/churn/infer", json={"inputs": [tensor]})
    assert r.status_code == 200, r.text
    outputs = {o["name"]: o for o in r.json()["outputs"]}
    predict, probabilities = _model_says(sklearn_model_file, large)
    assert outputs["predict"]["shape"][0] == ROWS
    assert outputs["predict"]["data"] == predict.tolist()
    np.testing.assert_allclose(
        np.array(outputs["probabilities"]["data"]).reshape(ROWS, -1), probabilities
    )


def test_a_request_over_the_row_cap_gets_413_naming_the_cap(http) -> None:
    rows = [[0.1, 0.2, 0.3, 0.4]] * 50_001
    r = http.post("/v1/models/churn:predict", json={"instances": rows})
    assert r.status_code == 413, r.text
    error = r.json()["error"]
    assert error["code"] == "payload_too_large"
    assert "50,000 rows" in error["message"]
    assert "CLOCHE_SERVING__MAX_REQUEST_ROWS" in error["message"]


def test_small_requests_alongside_a_large_one_are_all_answered_correctly(
    http, server, large, sklearn_model_file
) -> None:
    small = large[:40]
    expected_small = _model_says(sklearn_model_file, small)[0].tolist()

    def one_small(i: int) -> object:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            r = c.post("/v1/models/churn:predict", json={"instances": [small[i].tolist()]})
            assert r.status_code == 200, r.text
            return r.json()["predictions"][0]

    with ThreadPoolExecutor(max_workers=3) as pool:
        big = pool.submit(http.post, "/v1/models/churn:predict", json={"instances": large.tolist()})
        answers = list(pool.map(one_small, range(len(small))))
        r = big.result()
    assert answers == expected_small
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == _model_says(sklearn_model_file, large)[0].tolist()
