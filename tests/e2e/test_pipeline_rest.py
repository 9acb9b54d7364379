"""Pipelines through a real `cloche up` over REST (the CLI with --url, so the SDK's HTTP form):
registered, queued, cancelled while a step runs (its process stopped, no later step run), and
retried after a failure or a cancel without running again the steps that succeeded."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cloche.config import Settings
from cloche.store.store import Store
from cloche.store.tables import PipelineRunRow
from tests.e2e._cli import ok_json
from tests.e2e._servers import cloche_up

pytestmark = pytest.mark.slow

PIPELINE = """
import time
from pathlib import Path

from cloche.pipelines import component, pipeline


def _note(path: str, line: str) -> None:
    with open(path, "a") as handle:
        handle.write(line + "\\n")


@component
def first(path: str) -> str:
    _note(path, "first")
    return "first"


@component
def slow(path: str, gate: str, broken: str, after: str) -> str:
    _note(path, "slow-start")
    deadline = time.monotonic() + 90
    while not Path(gate).exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the gate never opened")
        time.sleep(0.05)
    if Path(broken).exists():
        raise RuntimeError("broken on purpose")
    _note(path, "slow-done")
    return "slow"


@component
def last(path: str, after: str) -> str:
    _note(path, "last")
    return "last"


@pipeline(name="gated")
def gated(path: str, gate: str, broken: str) -> None:
    one = first(path=path)
    two = slow(path=path, gate=gate, broken=broken, after=one.output)
    last(path=path, after=two.output)
"""

FAST = {"CLOCHE_SCHEDULER__TICK_SECONDS": "0.3"}


def until(check: Callable[[], Any], what: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.1)
    return found


def runner_pid(home: Path, run_id: str) -> int | None:
    store = Store.open(Settings(home=home))
    try:
        with store.transaction() as session:
            row = session.get(PipelineRunRow, run_id)
            runner = row.runner if row is not None else None
    finally:
        store.close()
    return int(runner.rpartition(":")[2]) if runner else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    source = tmp_path / "gated.py"
    source.write_text(PIPELINE)
    names = ("journal", "gate", "broken")
    return {"source": source} | {name: tmp_path / name for name in names}


def test_a_run_cancelled_over_rest_stops_its_running_step_and_starts_no_other(
    files: dict[str, Path],
) -> None:
    home = Path(os.environ["CLOCHE_HOME"])
    journal = files["journal"]
    with cloche_up(home, env=FAST) as server:
        rest = ("--url", server.url, "pipelines")
        assert ok_json(*rest, "register", files["source"])["version"] == 1
        params = [f"-p{k}={files[k]}" for k in ("gate", "broken")] + [f"-ppath={journal}"]
        queued = ok_json(*rest, "run", "gated", *params)
        run_id = queued["id"]
        until(lambda: journal.exists() and "slow-start" in journal.read_text(), "slow started")
        pid = until(lambda: runner_pid(home, run_id), "the run has a process")
        cancelled = ok_json(*rest, "runs", "cancel", run_id[:8])
        assert cancelled["state"] == "cancelled"
        until(lambda: not alive(pid), "the run's process stopped")
        until(lambda: runner_pid(home, run_id) is None, "the server saw the process end")
        shown = ok_json(*rest, "runs", "show", run_id)
        states = {s["step"]: s["state"] for s in shown["steps"]}
        assert states == {"first": "succeeded", "slow": "cancelled", "last": "cancelled"}
        assert journal.read_text().split() == ["first", "slow-start"]
        # Retried, the cancelled steps run again; the step that succeeded does not.
        files["gate"].write_text("open")
        retried = ok_json(*rest, "runs", "retry", run_id, "--wait")
        assert retried["state"] == "succeeded", retried
    assert journal.read_text().split() == ["first", "slow-start", "slow-start", "slow-done", "last"]


def test_a_failed_run_retried_over_rest_keeps_the_steps_that_succeeded(
    files: dict[str, Path],
) -> None:
    home = Path(os.environ["CLOCHE_HOME"])
    journal = files["journal"]
    files["gate"].write_text("open")
    files["broken"].write_text("yes")
    with cloche_up(home, env=FAST) as server:
        rest = ("--url", server.url, "pipelines")
        ok_json(*rest, "register", files["source"])
        params = [f"-p{k}={files[k]}" for k in ("gate", "broken")] + [f"-ppath={journal}"]
        result = ok_json(*rest, "run", "gated", *params)
        failed = until(
            lambda: (
                (run := ok_json(*rest, "runs", "show", result["id"]))["state"] == "failed" and run
            ),
            "the run failed",
        )
        assert {s["step"]: s["state"] for s in failed["steps"]}["last"] == "skipped"
        files["broken"].unlink()
        retried = ok_json(*rest, "runs", "retry", result["id"], "--wait")
    assert retried["state"] == "succeeded", retried
    attempts = [(s["step"], s["attempt"], s["state"]) for s in retried["steps"]]
    assert attempts == [
        ("first", 1, "succeeded"),
        ("slow", 1, "failed"),
        ("last", 1, "skipped"),
        ("slow", 2, "succeeded"),
        ("last", 2, "succeeded"),
    ]
    assert journal.read_text().split().count("first") == 1


APPROVAL = """
from cloche.pipelines import If, component, pipeline
from cloche.pipelines.components import approval


@component
def promote(comment: str) -> str:
    return "promoted: " + comment


@pipeline(name="gatekeeper")
def gatekeeper() -> None:
    decision = approval(message="promote?", timeout_seconds=120)
    with If(decision.outputs["approved"] == True):
        promote(comment=decision.outputs["comment"])
"""


def test_a_waiting_run_is_approved_over_rest_and_one_cancelled_while_waiting_stops(
    tmp_path: Path,
) -> None:
    home = Path(os.environ["CLOCHE_HOME"])
    source = tmp_path / "gatekeeper.py"
    source.write_text(APPROVAL)
    with cloche_up(home, env=FAST) as server:
        rest = ("--url", server.url, "pipelines")
        ok_json(*rest, "register", source)
        approved, cancelled = (ok_json(*rest, "run", "gatekeeper")["id"] for _ in range(2))

        def waiting(run_id: str) -> bool:
            return bool(ok_json(*rest, "runs", "show", run_id)["state"] == "waiting")

        until(lambda: waiting(approved) and waiting(cancelled), "both runs wait")
        ok_json(*rest, "approve", approved, "approval", "--comment", "looks fine")
        assert ok_json(*rest, "runs", "cancel", cancelled)["state"] == "cancelled"
        done = until(
            lambda: (
                (run := ok_json(*rest, "runs", "show", approved))["state"] == "succeeded" and run
            ),
            "the approved run ended",
        )
        until(lambda: runner_pid(home, cancelled) is None, "the cancelled run's process ended")
        stopped = ok_json(*rest, "runs", "show", cancelled)
    outputs = {s["step"]: s["outputs"] for s in done["steps"]}
    assert outputs["promote"] == {"output": "promoted: looks fine"}
    assert outputs["approval"]["approved"] is True
    states = {s["step"]: s["state"] for s in stopped["steps"]}
    assert states == {"approval": "cancelled", "promote": "cancelled"}
