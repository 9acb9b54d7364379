"""The data plane of a real server: V1 and OIP v2 predictions, routing, validation, auth."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import joblib
import numpy as np
import psutil
import pytest

import cloche
from tests.integration._slow_upload import post_huge_body
from tests.integration.conftest import LiveServer, ServerFactory

MB = 1024 * 1024

FEATURES = ["tenure", "spend", "visits", "age"]


@pytest.fixture
def deployed(settings, sklearn_model_file: Path) -> cloche.Client:
    sdk = cloche.Client(settings=settings)
    sdk.models.upload(sklearn_model_file, name="churn")
    sdk.models.upload(sklearn_model_file, name="churn")
    sdk.endpoints.create("churn")
    sdk.endpoints.deploy("churn", "churn:1")
    return sdk


@pytest.fixture
def server(deployed: cloche.Client, start_server: ServerFactory) -> LiveServer:
    return start_server(serving={"poll_ms": 100, "server_timing": True})


@pytest.fixture
def http(server: LiveServer):
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def test_v1_predictions_equal_the_models_own(http, sklearn_model_file, iris_like) -> None:
    import pandas as pd

    X = iris_like[0][:5]
    expected = joblib.load(sklearn_model_file).predict(pd.DataFrame(X, columns=FEATURES))
    r = http.post("/v1/models/churn:predict", json={"instances": X.tolist()})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["predictions"] == expected.tolist()
    assert (body["model"], body["version"]) == ("churn", 1)
    by_name = [dict(zip(FEATURES, row, strict=True)) for row in X.tolist()]
    r2 = http.post("/v1/models/churn:predict", json={"instances": by_name})
    assert r2.json()["predictions"] == expected.tolist()


def test_request_id_is_echoed_or_generated(http) -> None:
    body = {"instances": [[0.1, 0.2, 0.3, 0.4]]}
    r = http.post("/v1/models/churn:predict", json=body, headers={"X-Request-Id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123" and r.json()["request_id"] == "abc-123"
    generated = http.post("/v1/models/churn:predict", json=body).headers["x-request-id"]
    assert len(generated) == 24
    assert "predict;dur=" in r.headers["server-timing"]


def test_answers_leave_in_one_write_under_uvicorn(http, monkeypatch) -> None:
    from cloche.serving.respond import Responder

    written: list[bool] = []
    real = Responder._write

    def counting(self, *args):
        written.append(real(self, *args))
        return written[-1]

    monkeypatch.setattr(Responder, "_write", counting)
    body = {"instances": [[0.1, 0.2, 0.3, 0.4]]}
    for _ in range(3):  # one keep-alive connection: each answer completes its request cycle
        r = http.post("/v1/models/churn:predict", json=body)
        assert r.status_code == 200 and r.json()["predictions"]
        assert r.headers["content-length"] == str(len(r.content)) and "date" in r.headers
    assert http.post("/v1/models/nope:predict", json=body).status_code == 404
    assert written == [True] * 4


def test_v2_infer_metadata_and_health(http, sklearn_model_file, iris_like) -> None:
    import pandas as pd

    X = iris_like[0][:3]
    frame = pd.DataFrame(X, columns=FEATURES)
    model = joblib.load(sklearn_model_file)
    tensor = {"name": "x", "shape": [3, 4], "datatype": "FP64", "data": X.ravel().tolist()}
    r = http.post("/v2/models/churn/versions/1/infer", json={"inputs": [tensor], "id": "q1"})
    assert r.status_code == 200, r.text
    outputs = {o["name"]: o for o in r.json()["outputs"]}
    assert outputs["predict"]["data"] == model.predict(frame).tolist()
    np.testing.assert_allclose(
        np.array(outputs["probabilities"]["data"]).reshape(3, -1), model.predict_proba(frame)
    )
    assert r.json()["id"] == "q1" and r.json()["model_version"] == "1"
    meta = http.get("/v2/models/churn").json()
    assert [i["name"] for i in meta["inputs"]] == FEATURES and meta["platform"] == "sklearn"
    assert http.get("/v2/models/churn/ready").status_code == 200
    assert http.get("/v2/health/live").json() == {"live": True}
    assert http.get("/v2/health/ready").json() == {"ready": True}
    assert http.get("/v2").json()["name"] == "cloche"


def test_v2_binary_answers_say_so_in_their_content_type(http) -> None:
    tensor = {"name": "x", "shape": [2, 4], "datatype": "FP64", "data": [0.1] * 8}
    binary = {
        "inputs": [tensor],
        "outputs": [{"name": "predict", "parameters": {"binary_data": True}}],
    }
    r = http.post("/v2/models/churn/infer", json=binary)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    length = int(r.headers["inference-header-content-length"])
    (output,) = json.loads(r.content[:length])["outputs"]
    assert output["parameters"]["binary_data_size"] == len(r.content) - length == 16
    plain = http.post("/v2/models/churn/infer", json={"inputs": [tensor]})
    assert plain.headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in plain.headers


def test_traffic_split_reaches_the_workers_and_routes_by_weight(http, deployed) -> None:
    deployed.endpoints.deploy("churn", "churn:2", traffic=10)
    body = {"instances": [[0.1, 0.2, 0.3, 0.4]]}
    deadline = time.monotonic() + 2.0
    seen: Counter[int] = Counter()
    while time.monotonic() < deadline and seen[2] == 0:
        seen[http.post("/v1/models/churn:predict", json=body).json()["version"]] += 1
    assert seen[2] > 0, "the new deployment did not reach the server within 2 s"
    counts = Counter(
        http.post("/v1/models/churn:predict", json=body).json()["version"] for _ in range(400)
    )
    assert 10 <= counts[2] <= 80 and counts[1] + counts[2] == 400  # 10% of 400 = 40 ± 5 sd


def test_deploy_and_traffic_changes_under_load_drop_nothing(server, deployed) -> None:
    statuses: Counter[int] = Counter()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            while not stop.is_set():
                r = c.post("/v1/models/churn:predict", json={"instances": [[0.1, 0.2, 0.3, 0.4]]})
                statuses[r.status_code] += 1

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        deployed.endpoints.deploy("churn", "churn:2", traffic=50)
        time.sleep(0.5)
        deployed.endpoints.traffic("churn", {"churn:2": 100})
        time.sleep(0.5)
        deployed.endpoints.undeploy("churn", "churn:1")
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert set(statuses) == {200} and statuses[200] > 50


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{bad json", 400, "not valid JSON"),
        (b"", 400, "empty"),
        (b'{"instances": []}', 422, "is empty"),
        (b'{"instances": [[1, 2]]}', 422, "4 values, got 2"),
        (b'{"instances": [{"tenure": 1}]}', 422, "missing feature 'spend'"),
        (b'{"instances": [[1, 2, "x", 4]]}', 422, "feature 'visits' must be a number"),
        (b'{"rows": [[1, 2, 3, 4]]}', 422, '"instances" list'),
    ],
)
def test_bad_requests_get_a_4xx_naming_the_problem(http, body, status, message) -> None:
    r = http.post("/v1/models/churn:predict", content=body)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]["message"]
    ok = http.post("/v1/models/churn:predict", json={"instances": [[0.1, 0.2, 0.3, 0.4]]})
    assert ok.status_code == 200


def test_unknown_routes_and_endpoints_are_404(http) -> None:
    assert http.post("/v1/models/nope:predict", json={"instances": [[1]]}).status_code == 404
    assert http.post("/v2/models/churn/versions/9/infer", json={"inputs": []}).status_code == 404
    r = http.get("/v1/models/churn:predict")
    assert r.status_code == 404 and "POST /v1/models/ENDPOINT:predict" in r.json()["error"]["hint"]


def test_oversized_body_is_413(deployed, start_server: ServerFactory) -> None:
    server = start_server(serving={"max_request_mb": 1})
    big = b'{"instances": [' + b"[1.0, 2.0, 3.0, 4.0]," * 60_000 + b"[1, 2, 3, 4]]}"
    r = httpx.post(f"{server.url}/v1/models/churn:predict", content=big, timeout=10)
    assert r.status_code == 413 and "CLOCHE_SERVING__MAX_REQUEST_MB" in r.json()["error"]["hint"]


def test_tokens_guard_the_data_plane_when_auth_is_required(
    deployed, start_server: ServerFactory
) -> None:
    server = start_server(auth={"required": True})
    predictor = deployed.tokens.create(role="predictor").token
    viewer = deployed.tokens.create(role="viewer").token
    url = f"{server.url}/v1/models/churn:predict"
    body = {"instances": [[0.1, 0.2, 0.3, 0.4]]}
    assert httpx.post(url, json=body).status_code == 401
    assert httpx.post(url, json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert (
        httpx.post(url, json=body, headers={"Authorization": f"Bearer {viewer}"}).status_code == 403
    )
    ok = httpx.post(url, json=body, headers={"Authorization": f"Bearer {predictor}"})
    assert ok.status_code == 200
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/churn:predict",
        "/v1/models/churn:explain",
        "/v1/models/churn:feedback",
        "/v2/models/churn/infer",
        "/v2/models/churn/versions/1/infer",
    ],
)
def test_a_huge_body_without_token_is_refused_before_it_is_read(
    deployed, start_server: ServerFactory, path: str
) -> None:
    server = start_server(auth={"required": True})
    process = psutil.Process()  # the test server runs in this process
    before = process.memory_info().rss
    answer = post_huge_body(server.url + path, declared=200 * MB, content_type="application/json")
    assert answer.status == 401 and b"unauthorized" in answer.body
    assert answer.seconds < 1.0
    assert process.memory_info().rss - before < 50 * MB


@pytest.mark.parametrize("header", ["X-Forwarded-For", "Forwarded", "X-Real-IP"])
def test_a_forwarded_request_without_token_on_an_open_data_plane_is_refused(
    http, server: LiveServer, header: str
) -> None:
    body = {"instances": [[0.1, 0.2, 0.3, 0.4]]}
    for path, payload in (
        ("/v1/models/churn:predict", body),
        ("/v2/models/churn/infer", {"inputs": []}),
    ):
        r = http.post(path, json=payload, headers={header: "203.0.113.9"})
        assert r.status_code == 403, r.text
        assert "CLOCHE_AUTH__REQUIRED=true" in r.text
    assert http.get("/metrics", headers={header: "203.0.113.9"}).status_code == 403
    # With a token the header is only information; without the header the local user is served.
    with_token = {header: "203.0.113.9", **server.auth}
    assert http.post("/v1/models/churn:predict", json=body, headers=with_token).status_code == 200
    assert http.post("/v1/models/churn:predict", json=body).status_code == 200


def test_cross_origin_browser_requests_are_refused(http) -> None:
    r = http.post(
        "/v1/models/churn:predict",
        json={"instances": [[0.1, 0.2, 0.3, 0.4]]},
        headers={"Origin": "http://evil.example"},
    )
    assert r.status_code == 403


def test_metrics_count_requests_batches_and_queues(http) -> None:
    for _ in range(3):
        http.post("/v1/models/churn:predict", json={"instances": [[0.1, 0.2, 0.3, 0.4]]})
    http.post("/v1/models/churn:predict", content=b"{bad")
    r = http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'cloche_requests_total{endpoint="churn",deployment="churn:1",status="200"} 3' in text
    assert 'cloche_requests_total{endpoint="churn",deployment="churn:1",status="400"} 1' in text
    assert 'cloche_request_seconds_count{endpoint="churn"} 4' in text
    assert 'cloche_batch_rows_count{deployment="churn:1"} 3' in text
    assert 'cloche_queue_rows{endpoint="churn",deployment="churn:1"} 0' in text
    assert "cloche_model_load_seconds" in text and "cloche_payload_log_rows_total 4" in text


def test_explain_gives_per_feature_attributions(http) -> None:
    rows = [[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0]]
    r = http.post("/v1/models/churn:explain", json={"instances": rows})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["method"] == "sampled_shapley" and len(body["explanations"]) == 3
    assert set(body["explanations"][0]) == set(FEATURES)
    one = http.post("/v1/models/churn:explain", json={"instances": rows[:1]})
    assert one.status_code == 422 and "background" in one.json()["error"]["message"]


def test_compressed_bodies_are_decoded_and_capped_by_their_plain_size(
    deployed, start_server: ServerFactory
) -> None:
    import gzip
    import zlib

    server = start_server(serving={"max_request_mb": 1})
    url = f"{server.url}/v1/models/churn:predict"
    body = b'{"instances": [[0.1, 0.2, 0.3, 0.4]]}'
    for encoding, packed in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
        r = httpx.post(url, content=packed, headers={"Content-Encoding": encoding})
        assert r.status_code == 200, r.text
    bomb = gzip.compress(b" " * (8 * 2**20))  # 8 MiB of spaces in a few KiB
    r = httpx.post(url, content=bomb, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 413
    r = httpx.post(url, content=b"not gzip", headers={"Content-Encoding": "gzip"})
    assert r.status_code == 400 and "corrupt" in r.json()["error"]["message"]
    r = httpx.post(url, content=body, headers={"Content-Encoding": "br"})
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_encoding"
