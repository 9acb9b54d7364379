"""`cloche monitors` and `cloche alerts` through the real CLI, in-process on CLOCHE_HOME."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cloche.config import Settings
from cloche.logs.service import log_root
from cloche.serving.payload_log import PayloadLog, encode_row
from tests.e2e._cli import cloche, ok_json

FEATURES = ["tenure", "spend", "visits", "age"]


@pytest.fixture
def served(sklearn_model_file: Path, tmp_path: Path, settings: Settings) -> Path:
    """churn:1 with a baseline, deployed, and an hour of traffic drifted on `spend`."""
    rng = np.random.default_rng(1)
    baseline = tmp_path / "baseline.parquet"
    pq.write_table(pa.table({f: rng.normal(size=3_000) for f in FEATURES}), baseline)
    upload = cloche("models", "upload", sklearn_model_file, "--name", "churn")
    assert upload.exit_code == 0, upload.output
    assert cloche("models", "baseline", "churn:1", baseline).exit_code == 0
    assert cloche("endpoints", "create", "churn").exit_code == 0
    assert cloche("endpoints", "deploy", "churn", "churn:1").exit_code == 0
    X = rng.normal(size=(400, 4))
    X[:, 1] += 3.0
    start = int((datetime.now(UTC) - timedelta(minutes=30)).timestamp() * 1000)
    log = PayloadLog(log_root(settings.home))
    log.write(
        [
            encode_row(
                (
                    start + i,
                    f"r{i}",
                    "churn",
                    "churn",
                    1,
                    1,
                    False,
                    200,
                    1.0,
                    [X[i].tolist()],
                    {"predict": [0]},
                    None,
                    "predict",
                )
            )
            for i in range(400)
        ]
    )
    log.close()
    return settings.home


def test_create_run_show_and_alert_lifecycle(served: Path) -> None:
    made = ok_json(
        "monitors",
        "create",
        "churn",
        "--every",
        "30m",
        "--feature",
        "tenure=0.25",
        "--alert",
        "log",
        "--cooldown",
        "2h",
    )
    assert made["config"]["every_s"] == 1800 and made["config"]["cooldown_s"] == 7200
    assert made["config"]["feature_thresholds"] == {"tenure": 0.25}

    run = cloche("monitors", "run", "churn")
    assert run.exit_code == 0, run.output
    assert "BREACH" in run.stdout and "breached: skew:spend" in run.stdout
    assert "log: delivered" in run.stdout
    again = ok_json("monitors", "run", "churn")  # the same window: quiet, inside the cooldown
    skew = again["results"]["features"]["spend"]["skew"]
    assert (skew["metric"], skew["log_base"], skew["breached"]) == ("js", 2, True)
    assert again["results"]["alerts"]["deliveries"] == []

    alerts = ok_json("alerts", "list", "--state", "open")
    assert [a["key"] for a in alerts] == ["skew:spend"]
    assert alerts[0]["deliveries"][0]["channel"] == "log"
    acked = cloche("alerts", "ack", str(alerts[0]["id"]))
    assert acked.exit_code == 0 and "acknowledged" in acked.stdout
    assert ok_json("alerts", "show", str(alerts[0]["id"]))["acked_by"]

    shown = cloche("monitors", "show", "churn")
    assert shown.exit_code == 0 and "skew > 0.3" in shown.stdout
    assert cloche("monitors", "pause", "churn").exit_code == 0
    assert ok_json("monitors", "list")[0]["enabled"] is False
    assert cloche("monitors", "delete", "churn", "--yes").exit_code == 0
    assert ok_json("monitors", "list") == []


def test_quality_health_and_performance_thresholds_are_set_from_the_cli(served: Path) -> None:
    made = ok_json(
        "monitors", "create", "churn",
        "--threshold", "performance.min_accuracy=0.9",
        "--threshold", "performance.max_drop=off",
        "--threshold", "health.p99_ms=50",
        "--threshold", "quality.missing_rate=0.01",
    )  # fmt: skip
    config = made["config"]
    assert (
        config["performance"]["min_accuracy"] == 0.9 and config["performance"]["max_drop"] is None
    )
    assert config["performance"]["min_labelled_rows"] == 30  # the rest keep their defaults
    assert config["health"]["p99_ms"] == 50 and config["health"]["error_rate"] == 0.05
    assert config["quality"]["missing_rate"] == 0.01


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["monitors", "create", "ghost"], "ghost"),
        (["monitors", "create", "churn", "--every", "weekly"], "not a duration"),
        (["monitors", "create", "churn", "--alert", "pager:1"], "webhook:"),
        (["monitors", "create", "churn", "--feature", "tenure"], "--feature"),
        (["monitors", "create", "churn", "--threshold", "speed.p99_ms=5"], "health.p99_ms"),
        (["monitors", "create", "churn", "--threshold", "quality.missing_rate=2"], "less than"),
        (["monitors", "create", "churn", "--threshold", "health.p99_ms=fast"], "number"),
        (["monitors", "run", "nope"], "cloche monitors list"),
        (["alerts", "ack", "999"], "cloche alerts list"),
    ],
)
def test_bad_monitor_commands_say_what_to_do(served: Path, args: list[str], words: str) -> None:
    result = cloche(*args)
    assert result.exit_code != 0
    assert words in result.output


def test_run_names_probability_metrics_skipped_when_some_labelled_rows_lack_them(
    served: Path, tmp_path: Path, settings: Settings
) -> None:
    """The fixture's predictions carry no probabilities; 20 more here do: 20 of 60 labelled."""
    start = int((datetime.now(UTC) - timedelta(minutes=20)).timestamp() * 1000)
    log = PayloadLog(log_root(settings.home))
    served_by = ("churn", "churn", 1, 1, False, 200, 1.0, [[0.0] * 4])
    outputs = {"predict": [0], "probabilities": [[0.6, 0.4]]}
    log.write(
        [encode_row((start + i, f"p{i}", *served_by, outputs, None, "predict")) for i in range(20)]
    )
    log.close()
    labels = tmp_path / "labels.csv"
    ids = [f"r{i}" for i in range(40)] + [f"p{i}" for i in range(20)]
    labels.write_text(
        "request_id,label\n" + "".join(f"{rid},{i % 2}\n" for i, rid in enumerate(ids))
    )
    assert cloche("feedback", "churn", labels).exit_code == 0
    made = cloche("monitors", "create", "churn", "--threshold", "performance.min_roc_auc=0.8")
    assert made.exit_code == 0, made.output

    found = ok_json("monitors", "run", "churn")
    table = cloche("monitors", "run", "churn")

    perf = found["results"]["performance"]
    assert perf["labelled_rows"] == 60 and perf["labelled_rows_with_probabilities"] == 20
    why = "needs probabilities: 20 of 60 labelled rows had them"
    assert perf["skipped"]["roc_auc"].startswith(why)
    assert perf["skipped"]["log_loss"].startswith(why)
    assert perf["roc_auc"]["verdict"] == "not evaluated" and perf["roc_auc"]["breached"] is False
    assert "performance:roc_auc" not in found["breaches"]
    assert table.exit_code == 0, table.output
    text = " ".join(table.output.split())  # the console wraps long lines
    assert f"performance: roc_auc skipped ({why}" in text
    assert f"performance: log_loss skipped ({why}" in text
    assert "not evaluated: performance:roc_auc" in text
