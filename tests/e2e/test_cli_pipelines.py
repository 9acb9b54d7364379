"""`cloche pipelines`: run a pipeline file, see its steps, list runs, read a step's log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e._cli import cloche, ok_json

PIPELINE = """
import json
from pathlib import Path

from cloche.pipelines import Dataset, If, Input, Output, component, pipeline


@component
def make(n: int, data: Output[Dataset]) -> None:
    Path(data.path).write_text(json.dumps(list(range(n))))
    print(f"made {n} rows")


@component
def total(data: Input[Dataset]) -> int:
    return sum(json.loads(Path(data.path).read_text()))


@component
def shout(text: str) -> str:
    if text == "boom":
        raise RuntimeError("shouted too loud")
    return text.upper()


@pipeline(name="sums")
def sums(n: int = 4, word: str = "big") -> None:
    rows = make(n=n)
    count = total(data=rows.outputs["data"])
    with If(count.output > 5):
        shout(text=word)
"""


@pytest.fixture
def pipeline_file(tmp_path: Path) -> Path:
    path = tmp_path / "sums.py"
    path.write_text(PIPELINE)
    return path


def test_run_prints_each_step_and_records_the_run(pipeline_file: Path) -> None:
    result = cloche("pipelines", "run", pipeline_file, "--param", "n=5")
    assert result.exit_code == 0, result.output
    assert "make" in result.output and "total" in result.output and "output=10" in result.output
    assert "succeeded" in result.output
    runs = ok_json("pipelines", "runs")
    assert [(r["pipeline"], r["state"], r["params"]) for r in runs] == [
        ("sums", "succeeded", {"n": 5, "word": "big"})
    ]
    shown = ok_json("pipelines", "show", runs[0]["id"][:8])
    assert {s["step"]: s["state"] for s in shown["steps"]} == {
        "make": "succeeded", "total": "succeeded", "shout": "succeeded"
    }  # fmt: skip
    logs = cloche("pipelines", "logs", runs[0]["id"], "make")
    assert logs.exit_code == 0 and "made 5 rows" in logs.output


def test_a_second_run_comes_from_the_cache_unless_told_not_to(pipeline_file: Path) -> None:
    assert cloche("pipelines", "run", pipeline_file).exit_code == 0
    cached = ok_json("pipelines", "run", pipeline_file)
    assert {s["state"] for s in cached["steps"]} == {"cached"}
    fresh = ok_json("pipelines", "run", pipeline_file, "--no-cache")
    assert {s["state"] for s in fresh["steps"]} == {"succeeded"}


def test_a_failed_step_exits_1_and_its_error_is_shown(pipeline_file: Path) -> None:
    result = cloche("pipelines", "run", f"{pipeline_file}:sums", "-p", "word=boom")
    assert result.exit_code == 1
    assert "shouted too loud" in result.output
    assert "step 'shout' failed" in result.output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["-p", "n=four"], 2, "parameter 'n' takes a int, not 'four'"),
        (["-p", "size=3"], 2, "has no parameter 'size'"),
        (["-p", "n"], 2, "invalid --param 'n'"),
    ],
)
def test_bad_parameters_exit_2_with_what_to_write(
    pipeline_file: Path, args: list[str], code: int, message: str
) -> None:
    result = cloche("pipelines", "run", pipeline_file, *args)
    assert result.exit_code == code, result.output
    assert message in " ".join(result.output.split())
    assert ok_json("pipelines", "runs") == []  # nothing half-recorded


def test_a_file_that_does_not_import_or_names_no_such_pipeline_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import not_a_module_anywhere\n")
    result = cloche("pipelines", "run", broken)
    assert result.exit_code == 2 and "could not be imported" in result.output
    fine = tmp_path / "sums.py"
    fine.write_text(PIPELINE)
    result = cloche("pipelines", "run", f"{fine}:other")
    assert result.exit_code == 4 and "pipelines: sums" in " ".join(result.output.split())


def test_an_unknown_run_is_not_found_with_how_to_list_them() -> None:
    result = cloche("pipelines", "show", "pr_000000000000")
    assert result.exit_code == 4 and "cloche pipelines runs" in result.output


def test_the_installed_command_runs_a_pipeline_file(pipeline_file: Path, tmp_path: Path) -> None:
    env = {**os.environ, "CLOCHE_HOME": str(tmp_path / "home")}
    env.pop("CLOCHE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "cloche", "pipelines", "run", str(pipeline_file), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "succeeded"


def test_each_step_can_run_in_a_process_of_its_own(pipeline_file: Path) -> None:
    found = ok_json("pipelines", "run", pipeline_file, "--executor", "process", "--workers", "2")
    assert found["executor"] == "process" and found["state"] == "succeeded"
    bad = cloche("pipelines", "run", pipeline_file, "--executor", "threads")
    assert bad.exit_code == 2 and "unknown executor 'threads'" in bad.output


GATED = """
from cloche.pipelines import If, component, pipeline
from cloche.pipelines.components import approval


@component
def promote(ref: str) -> str:
    return ref


@pipeline(name="gated")
def gated() -> None:
    decision = approval(message="promote churn:2?", timeout_seconds=60)
    with If(decision.outputs["approved"] == True):
        promote(ref="churn:2")
"""


def test_a_run_waits_for_approve_from_another_shell(tmp_path: Path) -> None:
    import time

    path = tmp_path / "gated.py"
    path.write_text(GATED)
    env = {**os.environ}
    env.pop("CLOCHE_URL", None)
    with subprocess.Popen(
        [sys.executable, "-m", "cloche", "pipelines", "run", str(path), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as running:
        deadline = time.monotonic() + 60
        while True:
            runs = ok_json("pipelines", "runs")
            if runs and runs[0]["state"] == "waiting":
                break
            assert running.poll() is None and time.monotonic() < deadline, running.stderr
            time.sleep(0.2)
        refused = cloche("pipelines", "approve", runs[0]["id"], "promote")
        assert refused.exit_code == 5 and "not an approval waiting" in refused.output
        approved = cloche("pipelines", "approve", runs[0]["id"], "approval", "--comment", "ok")
        assert approved.exit_code == 0, approved.output
        out, err = running.communicate(timeout=60)
    assert running.returncode == 0, err
    steps = {s["step"]: s for s in json.loads(out)["steps"]}
    assert steps["approval"]["outputs"]["approved"] is True
    assert steps["promote"]["state"] == "succeeded"


def test_a_malformed_step_name_exits_2_with_how_to_write_one(pipeline_file: Path) -> None:
    run_id = ok_json("pipelines", "run", pipeline_file)["id"]
    result = cloche("pipelines", "logs", run_id, "make[x]")
    assert result.exit_code == 2 and "STEP[N]" in result.output


def test_runs_list_show_logs_cancel_and_retry_act_on_this_home(pipeline_file: Path) -> None:
    assert cloche("pipelines", "run", pipeline_file, "-p", "word=boom").exit_code == 1
    assert cloche("pipelines", "run", pipeline_file, "-p", "n=1").exit_code == 0
    failed = ok_json("pipelines", "runs", "list", "--state", "failed")
    assert [r["state"] for r in failed] == ["failed"]
    run_id = failed[0]["id"]
    assert len(ok_json("pipelines", "runs", "list", "--pipeline", "sums")) == 2
    shown = ok_json("pipelines", "runs", "show", run_id[:8])
    assert {s["step"]: s["state"] for s in shown["steps"]}["shout"] == "failed"
    logs = cloche("pipelines", "runs", "logs", run_id, "shout")
    assert logs.exit_code == 0 and "shouted too loud" in logs.output
    ended = cloche("pipelines", "runs", "cancel", run_id)
    assert ended.exit_code == 5 and "already ended (failed)" in ended.output
    # The file was never registered: the server could not run it again.
    unregistered = cloche("pipelines", "runs", "retry", run_id)
    assert unregistered.exit_code == 5 and "cloche pipelines register" in unregistered.output
    ok_json("pipelines", "register", pipeline_file)
    assert ok_json("pipelines", "runs", "retry", run_id)["state"] == "queued"
    assert ok_json("pipelines", "runs", "cancel", run_id)["state"] == "cancelled"


def test_an_unreachable_ray_cluster_fails_the_run_saying_what_to_do(
    pipeline_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("ray")
    monkeypatch.setenv("CLOCHE_BATCH__RAY_ADDRESS", "127.0.0.1:9")  # discard: nothing listens
    result = cloche("pipelines", "run", pipeline_file, "--executor", "ray")
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())  # the table wraps long lines
    assert "the Ray cluster at 127.0.0.1:9 cannot be reached" in said
    assert "ray start --head" in said and "--executor inprocess or process" in said
    assert "make" not in said  # no step was recorded
