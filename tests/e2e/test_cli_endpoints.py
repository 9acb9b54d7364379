"""`cloche endpoints` and `cloche logs` through the real CLI, in-process on CLOCHE_HOME."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cloche.logs.ingest import ingest_edge_log
from cloche.serving.payload_log import encode_row
from cloche.store.store import Store
from tests.e2e._cli import cloche, ok_json


@pytest.fixture
def two_versions(sklearn_model_file: Path) -> None:
    for _ in range(2):
        assert cloche("models", "upload", sklearn_model_file, "--name", "churn").exit_code == 0
    assert cloche("endpoints", "create", "churn", "--log-sample-rate", "0.5").exit_code == 0


def test_deploy_split_show_and_undeploy(two_versions: None) -> None:
    ok_json("endpoints", "deploy", "churn", "churn:1")
    ep = ok_json("endpoints", "deploy", "churn", "churn:2", "--traffic", "10")
    assert {d["version"]: d["traffic"] for d in ep["deployments"]} == {1: 90, 2: 10}
    ep = ok_json("endpoints", "traffic", "churn", "1=30", "churn:2=70")
    assert {d["version"]: d["traffic"] for d in ep["deployments"]} == {1: 30, 2: 70}
    shown = ok_json("endpoints", "show", "churn")
    assert shown["log_sample_rate"] == 0.5 and shown["shadow_agreement"] == []
    assert ok_json("endpoints", "update", "churn", "--log-sample-rate", "1")["log_sample_rate"] == 1
    ep = ok_json("endpoints", "undeploy", "churn", "churn:1")
    assert [d["version"] for d in ep["deployments"]] == [2]
    assert [e["name"] for e in ok_json("endpoints", "list")] == ["churn"]
    result = cloche("endpoints", "show", "churn")
    assert result.exit_code == 0 and "churn:2" in result.stdout
    assert ok_json("endpoints", "delete", "churn") == {"deleted": "churn"}


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (["endpoints", "traffic", "churn", "1=50", "2=40"], 2, "must sum to 100"),
        (["endpoints", "traffic", "churn", "churn:1"], 2, "cannot read traffic"),
        (["endpoints", "deploy", "churn", "churn:9"], 4, "no version 9"),
        (["endpoints", "deploy", "nope", "churn:1"], 4, "endpoint 'nope' does not exist"),
        (["endpoints", "deploy", "churn", "churn:1", "--traffic", "150"], 2, "--traffic"),
        (["endpoints", "create", "churn"], 5, "already exists"),
        (["endpoints", "create", "bad/name"], 2, "invalid model name"),
        (["endpoints", "create", "other", "--log-sample-rate", "2"], 2, "--log-sample-rate"),
        (["logs", "churn", "--since", "yesterday"], 2, "cannot read the time"),
    ],
)
def test_bad_input_gets_a_message_and_exit_code(
    two_versions: None, args: list[str], exit_code: int, message: str
) -> None:
    cloche("endpoints", "deploy", "churn", "churn:1")
    if args[:2] == ["endpoints", "traffic"]:
        cloche("endpoints", "deploy", "churn", "churn:2", "--traffic", "10")
    result = cloche(*args)
    assert result.exit_code == exit_code, result.output
    assert message in result.output


def test_logs_of_an_endpoint_with_no_traffic_is_empty(two_versions: None) -> None:
    payload = ok_json("logs", "churn", "--since", "1h")
    assert payload["rows"] == [] and payload["stats"]["dropped"] == 0


def edge_chunk(rows: int) -> bytes:
    """``rows`` answered predictions of churn:1, as an edge server spools them."""
    now_ms = int(time.time() * 1000)
    row = ["churn", "churn", 1, 0, False, 200, 1.5, [[0.5]], {"predict": [1]}, None, "predict"]
    return b"".join(encode_row([now_ms + i, f"edge-{i}", *row]) for i in range(rows))


def test_logs_count_the_rows_synced_from_an_edge_site(two_versions: None, store: Store) -> None:
    ok_json("endpoints", "deploy", "churn", "churn:1")
    taken = ingest_edge_log(
        store, "churn", site="plant-7", segment="seg-1.jsonl", offset=0, body=edge_chunk(3)
    )
    assert taken.accepted and taken.rows == 3
    result = cloche("logs", "churn", "--since", "1h", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "edge-0" in result.stdout and "edge-2" in result.stdout
    assert "3 shown; 3 logged in all (3 synced from edge sites" in result.stdout
    stats = ok_json("logs", "churn", "--since", "1h")["stats"]
    assert (stats["logged"], stats["synced"]) == (3, 3)
