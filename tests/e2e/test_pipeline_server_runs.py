"""Registered pipelines run by `cloche up`: queued from the CLI, run in a child of the server,
and resumed after the server and the run's process are killed, without running again a step
that had finished."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cloche.config import Settings
from cloche.pipelines import records
from cloche.store.store import Store
from cloche.store.tables import PipelineRunRow
from tests.e2e._cli import cloche, ok_json
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
def gated(path: str, gate: str, after: str) -> str:
    _note(path, "gated-start")
    deadline = time.monotonic() + 90
    while not Path(gate).exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the gate never opened")
        time.sleep(0.05)
    _note(path, "gated-done")
    return "gated"


@component
def last(path: str, after: str) -> str:
    _note(path, "last")
    return "last"


@pipeline(name="resumable")
def resumable(path: str, gate: str) -> None:
    one = first(path=path)
    two = gated(path=path, gate=gate, after=one.output)
    last(path=path, after=two.output)
"""

FAST = {"CLOCHE_SCHEDULER__TICK_SECONDS": "0.3"}


def _wait(
    store: Store, run_id: str, done: Callable[[], bool], what: str, timeout: float = 90
) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"{what}: {records.get_run(store, run_id)}"
        time.sleep(0.1)


def test_a_run_killed_with_its_server_resumes_on_restart_without_repeating_a_step(
    tmp_path: Path,
) -> None:
    home = Path(os.environ["CLOCHE_HOME"])
    source = tmp_path / "resumable.py"
    source.write_text(PIPELINE)
    journal, gate = tmp_path / "journal.txt", tmp_path / "gate"
    registered = ok_json("pipelines", "register", source)
    assert (registered["name"], registered["version"]) == ("resumable", 1)
    store = Store.open(Settings(home=home))
    try:
        with cloche_up(home, env=FAST) as server:
            queued = ok_json(
                "pipelines", "run", "resumable", "-p", f"path={journal}", "-p", f"gate={gate}"
            )
            assert queued["state"] == "queued"
            run_id = queued["id"]
            _wait(
                store,
                run_id,
                lambda: journal.exists() and "gated-start" in journal.read_text(),
                "the gated step started",
            )
            runner = records.get_run(store, run_id)
            with store.transaction() as session:
                row = session.get(PipelineRunRow, run_id)
                assert row is not None and row.runner is not None
                pid = int(row.runner.rpartition(":")[2])
            assert runner.state == "running"
            # The machine goes down: the server and the run's own process, at once.
            server.kill_group()
            os.kill(pid, signal.SIGKILL)
        gate.write_text("open")
        with cloche_up(home, env=FAST):
            _wait(store, run_id, lambda: records.get_run(store, run_id).done, "the run ended")
        result = records.get_run(store, run_id)
    finally:
        store.close()
    assert result.state == "succeeded", result
    lines = journal.read_text().split()
    # The finished step ran once; the step cut off mid-way ran again, from its start.
    assert lines.count("first") == 1 and lines.count("last") == 1
    assert lines.count("gated-start") == 2 and lines.count("gated-done") == 1
    first_attempts = [r for r in result.steps if r.step == "first"]
    assert [(r.attempt, r.state) for r in first_attempts] == [(1, "succeeded")]


def test_queueing_an_unregistered_pipeline_or_a_bad_parameter_is_refused() -> None:
    missing = cloche("pipelines", "run", "nowhere")
    assert missing.exit_code == 4 and "cloche pipelines register" in missing.output
