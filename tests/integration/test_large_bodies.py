"""A worker decoding a large body goes on answering: health checks meanwhile take under a second.

One live server (in this process, on loopback), one 50 MB body (V1, or OIP v2 JSON) whose last
value is bad, so that the request costs its whole decoding and then fails (422) without a
prediction; health checks are sent back to back while it is in flight.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest

import cloche
from cloche.config import Settings
from tests.integration.conftest import ServerFactory

ROW = [0.123456789, 1.23456789, 2.3456789, 3.456789]
HEALTH_LIMIT_S = 1.0
PREDICT = "/v1/models/churn:predict"
INFER = "/v2/models/churn/infer"


@pytest.fixture
def url(settings: Settings, sklearn_model_file: Path, start_server: ServerFactory) -> str:
    with cloche.Client(settings=settings) as sdk:
        sdk.models.upload(sklearn_model_file, name="churn")
        sdk.endpoints.create("churn", log_sample_rate=0.0)
        sdk.endpoints.deploy("churn", "churn:1")
    return start_server(serving={"max_request_mb": 64}).url


def _v1_body() -> tuple[str, bytes]:
    rows = [ROW] * (50 * 2**20 // len(orjson.dumps(ROW)))
    return PREDICT, orjson.dumps({"instances": [*rows, ["not a number", 1, 2, 3]]})


def _v2_body() -> tuple[str, bytes]:
    values = ROW * (50 * 2**20 // len(orjson.dumps(ROW)))
    n = len(values) // 4
    tensor = {"name": "x", "shape": [n + 1, 4], "datatype": "FP64",
              "data": [*values, "not a number", 1, 2, 3]}  # fmt: skip
    return INFER, orjson.dumps({"inputs": [tensor]})


@pytest.mark.parametrize("make", [_v1_body, _v2_body], ids=["v1", "v2-json"])
def test_health_answers_within_a_second_while_a_50_mb_body_is_decoded(url: str, make) -> None:
    path, body = make()
    assert len(body) > 50 * 10**6
    big: list[httpx.Response] = []

    def send_big() -> None:
        big.append(httpx.post(f"{url}{path}", content=body, timeout=120))

    sender = threading.Thread(target=send_big, daemon=True)
    waits: list[float] = []
    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.get("/v2/health/live").status_code == 200  # connected before the load
        sender.start()
        deadline = time.monotonic() + 120
        while sender.is_alive() and time.monotonic() < deadline:
            started = time.monotonic()
            assert http.get("/v2/health/live").status_code == 200
            waits.append(time.monotonic() - started)
            time.sleep(0.05)
    sender.join(timeout=5)
    assert big and big[0].status_code == 422, big and big[0].text[:300]
    assert "instances[" in big[0].text or "does not hold FP64" in big[0].text
    assert len(waits) >= 5  # the checks really overlapped the decoding
    assert max(waits) < HEALTH_LIMIT_S, sorted(waits)[-5:]
