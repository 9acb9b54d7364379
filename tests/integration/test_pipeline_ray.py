"""The Ray executor on a local Ray: the same steps, outputs, attempts and logs as in-process;
a step past its timeout cancelled, a crashing worker failing only its step, and an unreachable
cluster a clear error on the run before any step is recorded."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloche.config import Settings
from cloche.pipelines import (
    Dataset,
    Else,
    ExitHandler,
    If,
    Input,
    Metrics,
    Output,
    ParallelFor,
    Pipeline,
    component,
    pipeline,
)
from cloche.pipelines.entities import PipelineRun
from cloche.pipelines.runner import execute_run, start_run
from cloche.store.store import Store

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def _ray_for_this_module() -> Iterator[None]:
    yield
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture
def local_ray(_ray_for_this_module: None) -> None:
    # One small local Ray for the module (its start is most of this file's time); a run finds
    # it connected and leaves it up.
    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            object_store_memory=80 * 2**20,
        )


@component
def make_rows(n: int, data: Output[Dataset]) -> None:
    Path(data.path).write_text(json.dumps(list(range(n))))
    data.metadata["rows"] = n
    print(f"wrote {n} rows")


@component
def mean(data: Input[Dataset], metrics: Output[Metrics]) -> float:
    rows = json.loads(Path(data.path).read_text())
    metrics.log_metric("mean", sum(rows) / len(rows))
    Path(metrics.path).write_text("{}")
    return sum(rows) / len(rows)


@component
def label(text: str) -> str:
    print(text)
    return text.upper()


@component
def flaky(marker: str) -> int:
    count = len(Path(marker).read_text()) + 1 if Path(marker).exists() else 1
    Path(marker).write_text("x" * count)
    if count < 2:
        raise RuntimeError(f"try {count} failed")
    return count


@pipeline(name="fanned")
def fanned(marker: str, n: int = 5, sites: list = ["a", "b", "c"]) -> None:  # noqa: B006
    with ExitHandler(label(text="finished")):
        rows = make_rows(n=n)
        average = mean(data=rows.outputs["data"])
        with If(average.outputs["output"] > 3):
            label(text="high")
        with Else():
            label(text="low")
        with ParallelFor(sites) as site:
            label(text=site)
        flaky(marker=marker).set_retry(1, backoff_seconds=0.01)


def _run(store: Store, root: Path, pipe: Pipeline, executor: str, **params: Any) -> PipelineRun:
    started = start_run(store, pipe, params, actor="test", executor=executor)
    return execute_run(store, started.id, pipe.components, root=root, workers=2, use_cache=False)


def _comparable(run: PipelineRun) -> list[tuple[Any, ...]]:
    """Each attempt as the records say it, less what differs by run (times, artifact folders)."""

    def outputs(values: dict[str, Any]) -> dict[str, Any]:
        return {k: {**v, "uri": None} if isinstance(v, dict) else v for k, v in values.items()}

    def last_line(error: str) -> str:  # the frames above it name the executor's own code
        return error.strip().splitlines()[-1] if error else ""

    return sorted(
        (r.step, r.iteration, r.attempt, r.state, outputs(r.outputs), r.log, last_line(r.error))
        for r in run.steps
    )


def test_an_unreachable_ray_cluster_fails_the_run_naming_it_before_any_step(
    store: Store, tmp_path: Path
) -> None:
    if ray.is_initialized():  # connected by an earlier test: this one needs a fresh connect
        ray.shutdown()
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    started = start_run(store, fanned, {"marker": "m"}, actor="t", executor="ray")
    result = execute_run(store, started.id, fanned.components, root=tmp_path, ray_address=address)
    assert result.state == "failed"
    assert f"the Ray cluster at {address} cannot be reached" in result.error
    assert "ray start --head" in result.error and "--executor inprocess" in result.error
    assert result.steps == []
    assert not ray.is_initialized()


def test_a_ray_address_that_is_not_host_port_fails_the_run_saying_so(
    store: Store, tmp_path: Path
) -> None:
    if ray.is_initialized():
        ray.shutdown()
    started = start_run(store, fanned, {"marker": "m"}, actor="t", executor="ray")
    result = execute_run(store, started.id, fanned.components, root=tmp_path, ray_address="head")
    assert result.state == "failed" and result.steps == []
    assert "the Ray address 'head' is not HOST:PORT or ray://HOST:PORT" in result.error


def test_a_ray_run_records_the_same_steps_outputs_retries_and_logs_as_in_process(
    store: Store, tmp_path: Path, local_ray: None
) -> None:
    here = _run(store, tmp_path / "a", fanned, "inprocess", marker=str(tmp_path / "m1"))
    on_ray = _run(store, tmp_path / "b", fanned, "ray", marker=str(tmp_path / "m2"))
    assert on_ray.state == here.state == "succeeded", on_ray.error
    assert on_ray.executor == "ray"
    assert _comparable(on_ray) == _comparable(here)
    assert on_ray.step_states()["label-4[2]"] == "succeeded"  # the fan-out ran on Ray
    assert [(r.attempt, r.state) for r in on_ray.steps if r.step == "flaky"] == [
        (1, "failed"), (2, "succeeded")
    ]  # fmt: skip
    latest = on_ray.latest()
    assert latest[("make_rows", -1)].log == "wrote 5 rows\n"
    assert latest[("mean", -1)].outputs["metrics"]["metadata"] == {"mean": 2.0}
    data = latest[("make_rows", -1)].outputs["data"]
    assert Path(data["uri"]).is_relative_to(tmp_path / "b")


def test_a_ray_step_past_its_timeout_is_cancelled(
    store: Store, tmp_path: Path, local_ray: None
) -> None:
    marker = tmp_path / "finished"

    @component
    def sleepy(path: str) -> None:
        time.sleep(2)
        Path(path).write_text("done")

    @pipeline(name="sleepy")
    def sleepy_pipeline(path: str) -> None:
        with ExitHandler(label(text="after")):
            sleepy(path=path).set_timeout(0.5)

    result = _run(store, tmp_path, sleepy_pipeline, "ray", path=str(marker))
    assert result.state == "failed"
    assert "past its timeout of 0.5 s and was stopped" in result.latest()[("sleepy", -1)].error
    assert result.latest()[("label", -1)].state == "succeeded"
    time.sleep(2.2)
    assert not marker.exists()  # its worker was killed, not left to finish


def test_a_ray_step_whose_worker_dies_fails_only_that_step(
    store: Store, tmp_path: Path, local_ray: None
) -> None:
    @component
    def crash() -> None:
        os._exit(7)

    @pipeline(name="crashing")
    def crashing() -> None:
        with ExitHandler(label(text="after")):
            crash()

    result = _run(store, tmp_path, crashing, "ray")
    assert result.state == "failed"
    assert "step 'crash''s Ray task failed" in result.latest()[("crash", -1)].error
    assert result.latest()[("label", -1)].state == "succeeded"


SERVER_PIPELINE = """
from cloche.pipelines import component, pipeline


@component
def hello(name: str) -> str:
    return name.upper()


@pipeline(name="hello")
def hello_pipeline(name: str = "x") -> None:
    hello(name=name)
"""


def test_a_queued_ray_run_goes_to_the_servers_ray_address(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cloche.batch.runner import SETTINGS_ENV
    from cloche.pipelines import records, registered, server_runs
    from cloche.pipelines.loading import load_pipeline

    if ray.is_initialized():
        ray.shutdown()
    source = tmp_path / "hello.py"
    source.write_text(SERVER_PIPELINE)
    server = settings.model_copy(update={"batch": settings.batch.model_copy(
        update={"ray_address": "127.0.0.1:9"}  # discard: nothing listens
    )})  # fmt: skip
    store = Store.open(server)
    try:
        registered.register(
            store, load_pipeline(str(source)), source=SERVER_PIPELINE, file_name="hello.py",
            actor="t",
        )  # fmt: skip
        queued = registered.queue_run(store, "hello", {}, actor="t", executor="ray")
        monkeypatch.setenv(SETTINGS_ENV, server.model_dump_json())
        assert server_runs.main([queued.id]) == 0
        run = records.get_run(store, queued.id)
    finally:
        store.close()
    assert run.state == "failed" and run.steps == []
    assert "the Ray cluster at 127.0.0.1:9 cannot be reached" in run.error
