"""`cloche monitors run MONITOR --batch-job JOB` through the real CLI, in-process on
CLOCHE_HOME: a batch job scored from JSON lines into JSON lines, one feature shifted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cloche.config import Settings
from tests.e2e._cli import cloche, ok_json

FEATURES = ["tenure", "spend", "visits", "age"]


@pytest.fixture
def job(sklearn_model_file: Path, tmp_path: Path, settings: Settings) -> str:
    """churn:1 with an N(0, 1) baseline (no predictions in it), a monitor, and a finished
    batch job over 1,500 JSON lines whose `age` moved by two standard deviations."""
    rng = np.random.default_rng(7)
    baseline = tmp_path / "baseline.parquet"
    pq.write_table(pa.table({f: rng.normal(size=3_000) for f in FEATURES}), baseline)
    assert cloche("models", "upload", sklearn_model_file, "--name", "churn").exit_code == 0
    assert cloche("baselines", "create", "churn:1", baseline).exit_code == 0
    assert cloche("endpoints", "create", "churn").exit_code == 0
    assert cloche("monitors", "create", "churn", "--alert", "log").exit_code == 0
    X = rng.normal(size=(1_500, 4))
    X[:, 3] += 2.0
    source = tmp_path / "customers.jsonl"
    source.write_text(
        "".join(json.dumps(dict(zip(FEATURES, row, strict=True))) + "\n" for row in X.tolist())
    )
    scored = cloche(
        "batch", "run", "churn:1", "-i", source, "-o", tmp_path / "scores",
        "--output-format", "jsonl", "--workers", "1",
    )  # fmt: skip
    assert scored.exit_code == 0, scored.output
    return str(ok_json("batch", "list")[0]["id"])


def test_run_over_a_batch_job_shows_the_skewed_feature_and_alerts(job: str) -> None:
    run = cloche("monitors", "run", "churn", "--batch-job", job)
    assert run.exit_code == 0, run.output
    text = " ".join(run.stdout.split())  # rich wraps lines at the terminal's width
    assert "BREACH" in text and "breached: batch:skew:age" in text
    assert f"1500 input rows of batch job {job} (churn:1)" in text
    assert "drift: not applicable" in text and "a batch job has no previous window" in text
    assert "no verdict" in text and "the distribution is reported without a verdict" in text
    assert "log: delivered" in run.stdout

    again = ok_json("monitors", "run", "churn", "--batch-job", job[:7])  # a unique prefix
    assert again["breaches"] == ["batch:skew:age"]
    assert again["results"]["batch_job"] == job
    assert again["results"]["predictions"]["count"] == 1_500
    assert again["results"]["alerts"]["deliveries"] == []  # the same alert, in its cooldown

    shown = ok_json("monitors", "show", "churn")
    assert [r["results"]["batch_job"] for r in shown["runs"]] == [job, job]
    assert [a["key"] for a in ok_json("alerts", "list", "--state", "open")] == ["batch:skew:age"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["monitors", "run", "churn", "--batch-job", "bj_nothing"], "cloche batch list"),
        (["monitors", "run", "ghost", "--batch-job", "JOB"], "cloche monitors list"),
        (["monitors", "run", "--batch-job", "JOB"], "Missing argument 'MONITOR'"),
    ],
)
def test_bad_batch_job_runs_say_what_to_do(job: str, args: list[str], words: str) -> None:
    result = cloche(*[job if a == "JOB" else a for a in args])
    assert result.exit_code != 0
    assert words in result.output


def test_help_says_the_monitor_is_required() -> None:
    result = cloche("monitors", "run", "--help", env={"COLUMNS": "200"})  # unwrapped
    assert result.exit_code == 0 and "--batch-job" in result.output
    assert "(MONITOR is" in result.output and "required: it holds them" in result.output
