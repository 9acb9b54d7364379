"""Served predictions reach the payload log and read back through both SDK transports."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

import cloche
from tests.integration.conftest import LiveServer, ServerFactory

ROW = [0.1, 0.2, 0.3, 0.4]


@pytest.fixture
def server(settings, sklearn_model_file: Path, start_server: ServerFactory) -> LiveServer:
    sdk = cloche.Client(settings=settings)
    sdk.models.upload(sklearn_model_file, name="churn")
    sdk.models.upload(sklearn_model_file, name="churn")
    sdk.endpoints.create("churn")
    sdk.endpoints.deploy("churn", "churn:1")
    sdk.endpoints.deploy("churn", "churn:2", shadow=True)
    sdk.endpoints.create("quiet", log_sample_rate=0.0)
    sdk.endpoints.deploy("quiet", "churn:1")
    return start_server()


def _predict(url: str, endpoint: str, rid: str, body: dict | bytes) -> httpx.Response:
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    return httpx.post(
        f"{url}/v1/models/{endpoint}:predict", headers={"X-Request-Id": rid}, **kwargs
    )


@pytest.mark.parametrize("transport", ["local", "http"])
def test_answers_failures_and_shadow_copies_are_logged(server, settings, transport) -> None:
    for i in range(5):
        assert _predict(server.url, "churn", f"ok-{i}", {"instances": [ROW]}).status_code == 200
    assert _predict(server.url, "churn", "bad-1", b"{nope").status_code == 400
    assert _predict(server.url, "quiet", "q-1", {"instances": [ROW]}).status_code == 200
    sdk = cloche.Client(settings=settings) if transport == "local" else cloche.Client(server.url)
    with sdk:
        rows = sdk.logs.read("churn", since="10m").to_pylist()
        quiet = sdk.logs.read("quiet", since="10m").num_rows
        agreement_seen = sdk.logs.shadow_agreement("churn")
    live = [r for r in rows if not r["shadow"]]
    assert [r["request_id"] for r in live] == [f"ok-{i}" for i in range(5)] + ["bad-1"]
    assert {r["status"] for r in live[:5]} == {200} and live[5]["status"] == 400
    assert "not valid JSON" in live[5]["error"] and live[5]["inputs"] == "{nope"
    assert all(r["version"] == 1 and r["latency_ms"] > 0 for r in live)
    shadow = sorted(r["request_id"] for r in rows if r["shadow"])
    assert shadow == [f"ok-{i}" for i in range(5)]
    assert quiet == 0
    (agreement,) = agreement_seen
    # Both versions are the same model file: the shadow agrees on every request.
    assert (agreement.shadow, agreement.compared, agreement.agreed) == ("churn:2", 5, 5)


def test_a_request_larger_than_a_batch_is_logged_once_whole_and_mirrored_once(
    server, settings
) -> None:
    rows = [[0.1 * (i % 7), 0.2, 0.3, 0.4] for i in range(1000)]  # 16 model calls of 64 rows
    r = _predict(server.url, "churn", "big-1", {"instances": rows})
    assert r.status_code == 200, r.text
    with cloche.Client(settings=settings) as sdk:
        logged = sdk.logs.read("churn", since="10m").to_pylist()
        metrics = httpx.get(f"{server.url}/metrics", headers=server.auth).text
    assert sorted((x["request_id"], x["shadow"]) for x in logged) == [
        ("big-1", False),
        ("big-1", True),
    ]
    live = next(x for x in logged if not x["shadow"])
    assert len(json.loads(live["inputs"])) == 1000
    assert json.loads(live["outputs"])["predict"] == r.json()["predictions"]
    counted = [line for line in metrics.splitlines() if line.startswith("cloche_requests_total{")]
    assert [line.rsplit(" ", 1)[1] for line in counted if 'status="200"' in line] == ["1"]


def test_a_failed_request_logs_at_most_4_kib_of_its_body(server, settings) -> None:
    body = {"instances": [ROW] * 5000 + [["not a number", 1, 2, 3]]}  # about 110 kB
    assert _predict(server.url, "churn", "big-bad", body).status_code == 422
    with cloche.Client(settings=settings) as sdk:
        rows = sdk.logs.read("churn", since="10m").to_pylist()
    (logged,) = [r for r in rows if r["request_id"] == "big-bad" and not r["shadow"]]
    assert logged["status"] == 422 and "instances[5000]" in logged["error"]
    assert 0 < len(logged["inputs"].encode()) <= 4096
    assert logged["inputs"].startswith('{"instances"')


def test_explanations_are_logged_marked_and_metered(server, settings) -> None:
    rows = [ROW, [1.0, -1.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0]]
    url = f"{server.url}/v1/models/churn:explain"
    r = httpx.post(url, json={"instances": rows}, headers={"X-Request-Id": "ex-1"})
    assert r.status_code == 200, r.text
    bad = httpx.post(url, json={"instances": rows[:1]}, headers={"X-Request-Id": "ex-2"})
    assert bad.status_code == 422  # one row and no background to compare it with
    assert _predict(server.url, "churn", "p-1", {"instances": [ROW]}).status_code == 200
    # A client reusing a prediction's request id for an explanation: still one comparison.
    again = httpx.post(url, json={"instances": rows}, headers={"X-Request-Id": "p-1"})
    assert again.status_code == 200
    with cloche.Client(settings=settings) as sdk:
        sdk_rows = sdk.logs.read("churn", since="10m").to_pylist()
        logged = {r["request_id"]: r for r in sdk_rows}
        (agreement,) = sdk.logs.shadow_agreement("churn")
    assert logged["ex-1"]["kind"] == "explain" and logged["ex-1"]["status"] == 200
    assert json.loads(logged["ex-1"]["inputs"]) == rows
    assert len(json.loads(logged["ex-1"]["outputs"])["explanations"]) == 3
    assert logged["ex-2"]["kind"] == "explain" and logged["ex-2"]["status"] == 422
    assert {r["kind"] for r in sdk_rows if r["request_id"] == "p-1"} == {"predict", "explain"}
    assert (agreement.compared, agreement.agreed) == (1, 1)  # explanations are no answers
    text = httpx.get(f"{server.url}/metrics").text
    assert (
        'cloche_explain_requests_total{endpoint="churn",deployment="churn:1",status="200"} 2'
        in text
    )
    assert (
        'cloche_explain_requests_total{endpoint="churn",deployment="churn:1",status="422"} 1'
        in text
    )
    assert 'cloche_explain_seconds_count{endpoint="churn"} 3' in text
    assert 'cloche_request_seconds_count{endpoint="churn"} 1' in text


def test_cli_logs_shows_the_rows(server, settings) -> None:
    from typer.testing import CliRunner

    from cloche.cli.app import app

    assert _predict(server.url, "churn", "cli-1", {"instances": [ROW]}).status_code == 200
    result = CliRunner().invoke(app, ["logs", "churn", "--since", "1h", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert "cli-1" in [r["request_id"] for r in payload["rows"]]
    assert payload["rows"][0]["inputs"] == [ROW]


def test_a_server_compacts_segments_left_by_dead_workers(
    settings, sklearn_model_file: Path, start_server: ServerFactory
) -> None:
    import time

    import numpy as np

    from cloche.serving.payload_log import PayloadLog, encode_row

    root = settings.home / "logs"
    left = PayloadLog(root)  # a worker that wrote and then died
    row = (1_764_000_000_000, "old-1", "churn", "churn", 1, 1, False, 200, 1.0,
           np.array([ROW]), {"predict": np.array([0])}, None, "predict")  # fmt: skip
    left.write([encode_row(row)])
    left.close()
    start_server(serving={"log_retention_days": 0})  # the row is from 2025: keep it
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and list((root / "segments").glob("*.jsonl")):
        time.sleep(0.2)
    assert not list((root / "segments").glob("*.jsonl"))
    assert list(root.glob("endpoint=churn/date=*/hour=*/*.parquet"))
    with cloche.Client(settings=settings) as sdk:
        assert sdk.logs.read("churn", since="2025-01-01")["request_id"].to_pylist() == ["old-1"]


def test_retention_removes_old_hours_and_counts_them_in_metrics(
    settings, start_server: ServerFactory
) -> None:
    from datetime import UTC, datetime, timedelta

    import numpy as np

    from cloche.auth.tokens import create_token
    from cloche.logs import service as logs
    from cloche.serving.payload_log import PayloadLog, encode_row
    from cloche.store.store import Store

    root = logs.log_root(settings.home)
    old = int((datetime.now(UTC) - timedelta(days=400)).timestamp() * 1000)
    log = PayloadLog(root)
    for i in range(5):  # five rows in an hour 400 days old, compacted
        log.write([encode_row((old, f"old-{i}", "churn", "churn", 1, 7, False, 200, 1.0,
                               np.array([ROW]), None, None, "predict"))])  # fmt: skip
    log.close()
    assert logs.compact(root) == 5
    assert list(root.glob("endpoint=churn/date=*/hour=*"))
    store = Store.open(settings)
    try:
        token = create_token(store, role="admin", name="metrics").token
    finally:
        store.close()
    server = start_server(serving={"log_retention_days": 35})
    deadline, text = time.monotonic() + 60, ""
    while time.monotonic() < deadline:  # the first compaction runs a second after start
        text = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {token}"}).text
        if "cloche_payload_log_retention_rows_total 5" in text:
            break
        time.sleep(0.5)
    assert "cloche_payload_log_retention_rows_total 5" in text, text[-2000:]
    assert "cloche_payload_log_retention_files_total 1" in text
    assert not list(root.glob("endpoint=churn/date=*/hour=*"))
