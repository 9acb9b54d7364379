"""The process executor against a real store: each step attempt in a process of its own, so a
crash or a timeout ends only that step, a killed runner leaves no step process behind, and runs
going on at once keep their own steps."""

from __future__ import annotations

import time
from pathlib import Path

from cloche.pipelines import ExitHandler, Metrics, Output, Pipeline, component, pipeline
from cloche.pipelines.runner import execute_run, start_run
from cloche.store.store import Store


@component
def label(text: str) -> str:
    return text.upper()


@component
def nap(seconds: float, tag: str) -> str:
    time.sleep(seconds)
    return tag


def run_with(store: Store, tmp_path: Path, pipe: Pipeline, executor: str, workers: int = 4):  # type: ignore[no-untyped-def]
    started = start_run(store, pipe, {}, actor="test", executor=executor)
    return execute_run(store, started.id, pipe.components, root=tmp_path / "runs", workers=workers)


def test_the_process_executor_runs_each_step_in_its_own_process(
    store: Store, tmp_path: Path
) -> None:
    @component
    def where(metrics: Output[Metrics]) -> int:
        import os

        metrics.log_metric("pid", os.getpid())
        Path(metrics.path).write_text("{}")
        print("in a child")
        return os.getpid()

    @pipeline(name="isolated")
    def isolated() -> None:
        where()

    import os

    result = run_with(store, tmp_path, isolated, "process")
    step = result.latest()[("where", -1)]
    assert result.state == "succeeded", step.error
    assert step.outputs["output"] != os.getpid()
    assert step.outputs["metrics"]["metadata"] == {"pid": float(step.outputs["output"])}
    assert step.log == "in a child\n"


def test_a_crashing_step_process_fails_only_that_step(store: Store, tmp_path: Path) -> None:
    @component
    def crash() -> None:
        import os

        os._exit(7)

    @pipeline(name="crashing")
    def crashing() -> None:
        with ExitHandler(label(text="after")):
            crash()

    result = run_with(store, tmp_path, crashing, "process")
    assert result.state == "failed"
    assert "exited with code 7" in result.latest()[("crash", -1)].error
    assert result.latest()[("label", -1)].state == "succeeded"


def test_a_crashing_step_process_is_seen_while_a_sibling_step_process_still_runs(
    store: Store, tmp_path: Path
) -> None:
    # A sibling forked at the moment the crashing step's pipe is open holds its write end too:
    # the crash is read from the child's exit, not only from the pipe's end of file.
    @component
    def crash(after: float) -> None:
        import os

        time.sleep(after)
        os._exit(7)

    @component
    def linger(seconds: float) -> None:
        time.sleep(seconds)

    @pipeline(name="siblings")
    def siblings() -> None:
        crash(after=0.5)
        linger(seconds=3.0).after(nap(seconds=0.1, tag="later"))  # forked while crash runs

    result = run_with(store, tmp_path, siblings, "process", workers=2)
    latest = result.latest()
    assert "exited with code 7" in latest[("crash", -1)].error
    assert latest[("linger", -1)].state == "succeeded"
    assert latest[("crash", -1)].ended_at < latest[("linger", -1)].ended_at  # type: ignore[operator]


def test_a_large_result_comes_back_whole_from_a_step_process(store: Store, tmp_path: Path) -> None:
    @component
    def big() -> str:
        return "x" * 300_000  # several pipe buffers

    @pipeline(name="big")
    def big_pipeline() -> None:
        big()

    result = run_with(store, tmp_path, big_pipeline, "process")
    assert result.latest()[("big", -1)].outputs == {"output": "x" * 300_000}


def test_a_step_process_past_its_timeout_is_stopped(store: Store, tmp_path: Path) -> None:
    marker = tmp_path / "finished"

    @component
    def sleepy(path: str) -> None:
        time.sleep(3)
        Path(path).write_text("done")

    @pipeline(name="sleepy")
    def sleepy_pipeline(path: str) -> None:
        sleepy(path=path).set_timeout(0.3)

    started = start_run(
        store, sleepy_pipeline, {"path": str(marker)}, actor="t", executor="process"
    )
    result = execute_run(store, started.id, sleepy_pipeline.components, root=tmp_path)
    assert "was stopped" in result.latest()[("sleepy", -1)].error
    time.sleep(3.2)
    assert not marker.exists()  # killed, not abandoned


STUCK = """
import os, sys, time
from pathlib import Path
from cloche.config import Settings
from cloche.pipelines import component, pipeline
from cloche.pipelines.runner import run_pipeline
from cloche.store.store import Store

@component
def stuck(path: str) -> None:
    Path(path).write_text(str(os.getpid()))
    time.sleep(60)

@pipeline(name="stuck")
def stuck_pipeline(path: str) -> None:
    stuck(path=path)

store = Store.open(Settings(home=Path(sys.argv[2])))
run_pipeline(store, stuck_pipeline, {"path": sys.argv[1]}, actor="t", executor="process")
"""


def test_a_step_process_does_not_outlive_a_killed_runner(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    marker = tmp_path / "pid"
    runner = subprocess.Popen(
        [sys.executable, "-c", STUCK, str(marker), str(tmp_path / "home")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() or not marker.read_text():
            assert time.monotonic() < deadline and runner.poll() is None
            time.sleep(0.05)
        step = int(marker.read_text())
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait()
        while _alive(step):  # killed by the run's fork server once the runner is gone
            assert time.monotonic() < deadline, f"step process {step} still runs"
            time.sleep(0.05)
    finally:
        runner.kill()


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return status != "Z"  # a zombie has ended: only its parent's reaping is left


def test_process_runs_going_on_at_once_each_get_their_own_steps_results(
    store: Store, tmp_path: Path
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    @component
    def tagged(tag: str, seconds: float) -> str:
        time.sleep(seconds)
        return f"{tag}-done"

    @pipeline(name="first")
    def first() -> None:
        tagged(tag="first", seconds=1.0)

    @pipeline(name="second")
    def second() -> None:
        tagged(tag="second", seconds=0.1)

    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda p: run_with(store, tmp_path, p, "process"), [first, second]))
    assert [r.latest()[("tagged", -1)].outputs for r in runs] == [
        {"output": "first-done"}, {"output": "second-done"}
    ]  # fmt: skip
