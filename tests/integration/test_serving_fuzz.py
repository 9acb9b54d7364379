"""Fuzzing the data plane of a live server: no request body gets a 5xx or harms the worker.

Hypothesis draws request bodies (any JSON value, any bytes, plausible V1 and OIP v2 bodies, v2
binary bodies with an Inference-Header-Content-Length; strategies in ``_request_bodies.py``) and
sends them over HTTP to a real server
serving a scikit-learn model. Every answer must be a 200 or a 4xx with the JSON error shape, and
the server must still answer a good request afterwards.

Bodies that once got a 5xx (each found by these properties) are pinned by name in
``test_bodies_that_once_got_a_5xx_get_a_4xx``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

import cloche
from cloche.config import Settings
from tests.integration._request_bodies import (
    FEATURES,
    GOOD_ROW,
    json_values,
    v1_bodies,
    v2_binary_requests,
    v2_bodies,
)
from tests.integration.conftest import ServerFactory

PREDICT = "/v1/models/churn:predict"
INFER = "/v2/models/churn/infer"

FUZZ = hypothesis_settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- the oracle -------------------------------------------------------------------------------


def assert_answered_well(response: httpx.Response, sent: object) -> None:
    """A 200, or a 4xx with a message and a code: ``{"error": {"code", "message"}}`` on V1,
    the protocol's ``{"error": message, "code": ...}`` on OIP v2 routes."""
    status = response.status_code
    assert status < 500, f"{status} for {sent!r}: {response.text[:500]}"
    if status == 200:
        return
    assert 400 <= status < 500, f"{status} for {sent!r}"
    body = response.json()
    if response.request.url.path.startswith("/v2/"):
        assert isinstance(body["error"], str) and body["error"], body
        assert isinstance(body["code"], str) and body["code"], body
        return
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["code"], body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body


def assert_still_serving(http: httpx.Client) -> None:
    r = http.post(PREDICT, json={"instances": [GOOD_ROW]})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 1, r.text
    tensor = {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": GOOD_ROW}
    assert http.post(INFER, json={"inputs": [tensor]}).status_code == 200
    assert http.get("/v2/health/ready").status_code == 200


# --- the server -------------------------------------------------------------------------------


@pytest.fixture
def http(
    settings: Settings, sklearn_model_file: Path, start_server: ServerFactory
) -> Iterator[httpx.Client]:
    """A client of a live server whose endpoint `churn` serves a LogisticRegression."""
    with cloche.Client(settings=settings) as sdk:
        sdk.models.upload(sklearn_model_file, name="churn")
        sdk.endpoints.create("churn")
        sdk.endpoints.deploy("churn", "churn:1")
    server = start_server()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def run_property(http: httpx.Client, prop: Callable[[], None]) -> None:
    """Run a Hypothesis property against the server, then check that it still serves."""
    # This server runs in pytest's process, where warnings are errors; a served model only logs
    # numpy's overflow warnings (say, exp of a huge logit), so here they are ignored too.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        prop()
    assert_still_serving(http)


# --- the properties ---------------------------------------------------------------------------

paths = st.sampled_from([PREDICT, INFER])


def test_any_json_value_gets_a_200_or_a_clean_4xx(http: httpx.Client) -> None:
    @FUZZ
    @given(value=json_values, path=paths)
    def prop(value: Any, path: str) -> None:
        assert_answered_well(http.post(path, content=json.dumps(value).encode()), value)

    run_property(http, prop)


def test_any_bytes_get_a_200_or_a_clean_4xx(http: httpx.Client) -> None:
    @hypothesis_settings(FUZZ, max_examples=30)
    @given(
        body=st.binary(max_size=300) | st.binary(max_size=60).map(lambda b: b'{"inputs": [' + b),
        path=paths,
    )
    def prop(body: bytes, path: str) -> None:
        assert_answered_well(http.post(path, content=body), body)

    run_property(http, prop)


def test_v1_bodies_with_random_rows_get_a_200_or_a_clean_4xx(http: httpx.Client) -> None:
    @hypothesis_settings(FUZZ, max_examples=70)
    @given(body=v1_bodies)
    def prop(body: dict[str, Any]) -> None:
        response = http.post(PREDICT, content=json.dumps(body).encode())
        assert_answered_well(response, body)
        if response.status_code == 200:
            assert len(response.json()["predictions"]) == len(body["instances"])

    run_property(http, prop)


def test_v2_json_bodies_with_random_tensors_get_a_200_or_a_clean_4xx(http: httpx.Client) -> None:
    @hypothesis_settings(FUZZ, max_examples=70)
    @given(body=v2_bodies)
    def prop(body: dict[str, Any]) -> None:
        response = http.post(INFER, content=json.dumps(body).encode())
        assert_answered_well(response, body)

    run_property(http, prop)


def test_v2_binary_bodies_with_random_header_lengths_get_a_200_or_a_clean_4xx(
    http: httpx.Client,
) -> None:
    @hypothesis_settings(FUZZ, max_examples=80)
    @given(request=v2_binary_requests())
    def prop(request: tuple[bytes, dict[str, str]]) -> None:
        body, headers = request
        response = http.post(INFER, content=body, headers=headers)
        assert_answered_well(response, request)
        if response.status_code == 200:
            length = response.headers.get("inference-header-content-length")
            head = response.content[: int(length)] if length else response.content
            assert json.loads(head)["outputs"]

    run_property(http, prop)


# --- bodies that once got a 5xx, each found by the properties above -------------------------

T = {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": GOOD_ROW}
NAN_TAIL = np.array([[np.nan, 1, 2, 3]], dtype="<f8").tobytes()
NAN_HEAD = json.dumps(
    {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64",
                 "parameters": {"binary_data_size": len(NAN_TAIL)}}]}
).encode()  # fmt: skip


def _features(datatype: str, value: Any) -> dict[str, Any]:
    return {"inputs": [{"name": f, "shape": [1], "datatype": datatype, "data": [value]}
                       for f in FEATURES]}  # fmt: skip


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        pytest.param(PREDICT, {"instances": [[None, 1, 2, 3]]}, {}, id="v1-null-cell"),
        pytest.param(PREDICT, {"instances": [dict(zip(FEATURES, [1, 2, 3, None], strict=True))]},
                     {}, id="v1-null-feature"),
        pytest.param(INFER, {"inputs": [{**T, "data": ["nan", 1, 2, 3]}]}, {}, id="v2-nan-string"),
        pytest.param(INFER, {"inputs": [{**T, "datatype": "FP32", "data": [1e39, 1, 2, 3]}]}, {},
                     id="v2-fp32-overflow"),
        pytest.param(INFER, NAN_HEAD + NAN_TAIL,
                     {"Inference-Header-Content-Length": str(len(NAN_HEAD))}, id="v2-binary-nan"),
        pytest.param(INFER, {"inputs": [{**T, "shape": [True, 4]}]}, {}, id="v2-bool-dimension"),
        pytest.param(INFER, _features("BYTES", "x"), {}, id="v2-string-features"),
        pytest.param(INFER, {"inputs": [T], "outputs": [{"name": ["predict"]}]}, {},
                     id="v2-output-name-list"),
        pytest.param(INFER, {"inputs": [T], "parameters": [1]}, {}, id="v2-parameters-list"),
        pytest.param(INFER, {"inputs": [T], "outputs": [{"name": "predict", "parameters": "x"}]},
                     {}, id="v2-output-parameters-string"),
    ],
)  # fmt: skip
def test_bodies_that_once_got_a_5xx_get_a_4xx(
    http: httpx.Client, path: str, body: Any, headers: dict[str, str]
) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = http.post(path, content=content, headers=headers)
    assert_answered_well(response, body)
    assert response.status_code in (400, 422), response.text  # bad input: never a prediction
    assert_still_serving(http)


# --- hostile shapes: refused by name before any data is looked at ------------------------------

HOSTILE_SHAPES = {
    "overflowing": ([2**40, 2**40], "elements, over"),
    "negative": ([-1, 4], "non-negative"),
    "too-many-dimensions": ([1] * 100, "100 dimensions"),
    "int64-overflowing": ([2**63 - 1, 2], "elements, over"),
}


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize(("shape", "says"), HOSTILE_SHAPES.values(), ids=list(HOSTILE_SHAPES))
def test_hostile_shapes_get_400_naming_the_tensor_and_its_shape(
    http: httpx.Client, shape: list[int], says: str, binary: bool
) -> None:
    tensor: dict[str, Any] = {"name": "x", "shape": shape, "datatype": "FP64"}
    headers, tail = {}, b""
    if binary:
        tail = np.zeros(4).tobytes()
        tensor["parameters"] = {"binary_data_size": len(tail)}
    else:
        tensor["data"] = GOOD_ROW
    head = json.dumps({"inputs": [tensor]}).encode()
    if binary:
        headers = {"Inference-Header-Content-Length": str(len(head))}
    response = http.post(INFER, content=head + tail, headers=headers)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "invalid_shape"
    assert "input 'x': shape" in body["error"] and says in body["error"]
    assert len(response.content) < 1000  # a million-entry shape is not echoed back
    assert_still_serving(http)


def test_binary_size_that_disagrees_with_the_shape_gets_400_before_reading(
    http: httpx.Client,
) -> None:
    # The header claims 1 MB of data for a [1, 4] FP64 tensor; the body holds 32 bytes.
    tensor = {"name": "x", "shape": [1, 4], "datatype": "FP64",
              "parameters": {"binary_data_size": 2**20}}  # fmt: skip
    head = json.dumps({"inputs": [tensor]}).encode()
    response = http.post(
        INFER,
        content=head + np.zeros(4).tobytes(),
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    assert response.status_code == 400, response.text
    assert "needs 32 bytes, binary_data_size says 1048576" in response.json()["error"]
