"""Pipelines run in-process against a real store: every step attempt is recorded, branches and
loops decided as the run reaches them, results cached by content, retries and timeouts kept,
and a run started again picks up where it stopped."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import NamedTuple

import pytest

from cloche.errors import InvalidInput
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
from cloche.pipelines.runner import execute_run, start_run
from cloche.store.store import Store


class Scores(NamedTuple):
    rows: int
    mean: float


@component
def make_rows(n: int, data: Output[Dataset]) -> None:
    Path(data.path).write_text(json.dumps(list(range(n))))
    data.metadata["rows"] = n
    print(f"wrote {n} rows")


@component
def summarise(data: Input[Dataset], metrics: Output[Metrics]) -> Scores:
    rows = json.loads(Path(data.path).read_text())
    metrics.log_metric("mean", sum(rows) / len(rows))
    Path(metrics.path).write_text("{}")
    return Scores(len(rows), sum(rows) / len(rows))


@component
def label(text: str) -> str:
    return text.upper()


def run(store: Store, tmp_path: Path, pipe: Pipeline, **params: object):  # type: ignore[no-untyped-def]
    started = start_run(store, pipe, dict(params), actor="test")
    return execute_run(store, started.id, pipe.components, root=tmp_path / "runs")


def scoring() -> Pipeline:
    @pipeline(name="scoring")
    def scoring_pipeline(n: int = 5, sites: list = ["a", "b"]) -> None:  # noqa: B006
        done = label(text="finished")
        with ExitHandler(done):
            rows = make_rows(n=n)
            summary = summarise(data=rows.outputs["data"])
            with If(summary.outputs["mean"] > 3):
                label(text="high")
            with Else():
                label(text="low")
            with ParallelFor(sites) as site:
                label(text=site)

    return scoring_pipeline


def test_a_run_records_each_step_its_outputs_artifacts_and_logs(
    store: Store, tmp_path: Path
) -> None:
    result = run(store, tmp_path, scoring(), n=5)
    assert result.state == "succeeded", result
    states = result.step_states()
    assert states == {
        "make_rows": "succeeded",
        "summarise": "succeeded",
        "label-2": "skipped",  # mean of 0..4 is 2: not > 3
        "label-3": "succeeded",
        "label-4[0]": "succeeded",
        "label-4[1]": "succeeded",
        "label": "succeeded",  # the exit step, after everything else
    }
    latest = result.latest()
    summary = latest[("summarise", -1)]
    assert summary.outputs["rows"] == 5 and summary.outputs["mean"] == 2.0
    assert summary.outputs["metrics"]["metadata"] == {"mean": 2.0}
    data = latest[("make_rows", -1)].outputs["data"]
    assert json.loads(Path(data["uri"]).read_text()) == [0, 1, 2, 3, 4]
    assert data["metadata"] == {"rows": 5} and len(data["sha256"]) == 64
    assert latest[("make_rows", -1)].log == "wrote 5 rows\n"
    assert latest[("label-4", 1)].outputs == {"output": "B"}
    assert latest[("label", -1)].ended_at >= latest[("label-4", 1)].ended_at  # type: ignore[operator]


def test_a_second_run_reuses_results_by_content_and_reruns_what_changed(
    store: Store, tmp_path: Path
) -> None:
    first = run(store, tmp_path, scoring(), n=5)
    second = run(store, tmp_path, scoring(), n=5)
    assert {r.state for r in second.latest().values() if r.state != "skipped"} == {"cached"}
    assert second.latest()[("summarise", -1)].cached_from == first.id
    third = run(store, tmp_path, scoring(), n=9)
    states = third.step_states()
    assert states["make_rows"] == "succeeded" and states["summarise"] == "succeeded"
    assert states["label-2"] == "succeeded"  # mean 4 > 3 now
    assert states["label-4[0]"] == "cached"  # same input, same component


def test_a_changed_artifact_is_not_reused(store: Store, tmp_path: Path) -> None:
    first = run(store, tmp_path, scoring(), n=5)
    Path(first.latest()[("make_rows", -1)].outputs["data"]["uri"]).write_text("[1]")
    second = run(store, tmp_path, scoring(), n=5)
    assert second.step_states()["make_rows"] == "succeeded"


def test_a_failing_step_fails_the_run_skips_its_downstream_and_still_runs_the_exit_step(
    store: Store, tmp_path: Path
) -> None:
    @component
    def explode(data: Input[Dataset]) -> int:
        raise ValueError("bad rows")

    @pipeline(name="failing")
    def failing() -> None:
        with ExitHandler(label(text="cleanup")):
            rows = make_rows(n=3)
            count = explode(data=rows.outputs["data"])
            label(text="never").after(count)

    result = run(store, tmp_path, failing)
    assert result.state == "failed" and result.error == "step 'explode' failed"
    latest = result.latest()
    assert "ValueError: bad rows" in latest[("explode", -1)].error
    assert latest[("label-2", -1)].state == "skipped"
    assert latest[("label", -1)].state == "succeeded"


def test_retries_are_recorded_as_attempts_until_one_succeeds(store: Store, tmp_path: Path) -> None:
    tries = tmp_path / "tries"

    @component
    def flaky(marker: str) -> int:
        count = len(Path(marker).read_text()) + 1 if Path(marker).exists() else 1
        Path(marker).write_text("x" * count)
        if count < 3:
            raise RuntimeError(f"try {count} failed")
        return count

    @pipeline(name="flaky")
    def retrying(marker: str) -> None:
        flaky(marker=marker).set_retry(2, backoff_seconds=0.01)

    result = run(store, tmp_path, retrying, marker=str(tries))
    assert result.state == "succeeded"
    assert [(r.attempt, r.state) for r in result.steps] == [
        (1, "failed"), (2, "failed"), (3, "succeeded")
    ]  # fmt: skip
    assert result.latest()[("flaky", -1)].outputs == {"output": 3}


def test_a_step_past_its_timeout_fails_with_the_timeout_in_the_message(
    store: Store, tmp_path: Path
) -> None:
    @component
    def slow(seconds: float) -> None:
        time.sleep(seconds)

    @pipeline(name="slow")
    def slow_pipeline() -> None:
        slow(seconds=2.0).set_timeout(0.2)

    result = run(store, tmp_path, slow_pipeline)
    assert result.state == "failed"
    assert "past its timeout of 0.2 s" in result.latest()[("slow", -1)].error


def test_a_run_started_again_does_not_repeat_finished_steps(store: Store, tmp_path: Path) -> None:
    calls, gate = tmp_path / "calls", tmp_path / "gate"

    @component
    def counted(path: str) -> int:
        with open(path, "a") as handle:
            handle.write("x")
        return 1

    @component
    def gated(path: str, after: int) -> int:
        if not Path(path).exists():
            raise RuntimeError("gate closed")
        return after + 1

    @pipeline(name="resumable")
    def resumable(calls: str, gate: str) -> None:
        first = counted(path=calls)
        gated(path=gate, after=first.output)

    started = start_run(store, resumable, {"calls": str(calls), "gate": str(gate)}, actor="t")
    failed = execute_run(store, started.id, resumable.components, root=tmp_path)
    assert failed.state == "failed"
    gate.write_text("open")
    again = execute_run(store, started.id, resumable.components, root=tmp_path)
    assert again.state == "succeeded"
    assert calls.read_text() == "x"  # the finished step did not run twice
    assert [(r.step, r.attempt, r.state) for r in again.steps] == [
        ("counted", 1, "succeeded"), ("gated", 1, "failed"), ("gated", 2, "succeeded")
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "needs the parameter 'path' (str)"),
        ({"path": "x", "extra": 1}, "has no parameter 'extra'"),
        ({"path": 3}, "parameter 'path' takes a str, not int 3"),
    ],
)
def test_bad_parameters_are_refused_before_anything_is_recorded(
    store: Store, params: dict[str, object], message: str
) -> None:
    @pipeline(name="params")
    def needs_path(path: str) -> None:
        label(text=path)

    with pytest.raises(InvalidInput, match=re.escape(message)):
        start_run(store, needs_path, params, actor="t")


def run_with(store: Store, tmp_path: Path, pipe: Pipeline, executor: str, workers: int = 4):  # type: ignore[no-untyped-def]
    started = start_run(store, pipe, {}, actor="test", executor=executor)
    return execute_run(store, started.id, pipe.components, root=tmp_path / "runs", workers=workers)


@component
def nap(seconds: float, tag: str) -> str:
    time.sleep(seconds)
    return tag


def test_independent_steps_and_loop_items_run_at_the_same_time(
    store: Store, tmp_path: Path
) -> None:
    @pipeline(name="parallel")
    def parallel() -> None:
        for tag in ("a", "b", "c"):
            nap(seconds=0.5, tag=tag)
        with ParallelFor(["x", "y", "z"], parallelism=3) as item:
            nap(seconds=0.5, tag=item)

    result = run_with(store, tmp_path, parallel, "inprocess", workers=4)
    assert result.state == "succeeded"
    records = list(result.latest().values())
    assert len(records) == 6
    # Every step started before the first one ended: they ran side by side, not in a line.
    first_end = min(r.ended_at for r in records)  # type: ignore[type-var]
    assert all(r.started_at < first_end for r in records)  # type: ignore[operator]


def test_steps_in_parallel_threads_keep_their_own_logs(store: Store, tmp_path: Path) -> None:
    @component
    def chatty(tag: str) -> None:
        for _ in range(50):
            print(tag)
            time.sleep(0.001)

    @pipeline(name="chatty")
    def chatty_pipeline() -> None:
        chatty(tag="one")
        chatty(tag="two")

    result = run_with(store, tmp_path, chatty_pipeline, "inprocess", workers=2)
    logs = {r.step: set(r.log.split()) for r in result.steps if r.state == "succeeded"}
    assert logs == {"chatty": {"one"}, "chatty-2": {"two"}}


def test_an_unknown_executor_is_refused(store: Store) -> None:
    with pytest.raises(InvalidInput, match="unknown executor 'ray-ish'"):
        start_run(store, scoring(), {}, actor="t", executor="ray-ish")


def _approval_pipeline(timeout: float = 30.0) -> Pipeline:
    from cloche.pipelines.components import approval

    @pipeline(name="gated")
    def gated() -> None:
        decision = approval(message="promote?", timeout_seconds=timeout)
        with If(decision.outputs["approved"] == True):  # noqa: E712
            label(text="promoted")
        with Else():
            label(text="kept")

    return gated


def _wait_for(store: Store, run_id: str, state: str) -> None:
    from cloche.pipelines import records

    deadline = time.monotonic() + 20
    while records.get_run(store, run_id).state != state:
        assert time.monotonic() < deadline, records.get_run(store, run_id)
        time.sleep(0.05)


@pytest.mark.parametrize("approve", [True, False])
def test_an_approval_waits_for_a_decision_recorded_with_who_made_it(
    store: Store, tmp_path: Path, approve: bool
) -> None:
    import threading

    from cloche.audit import list_audit
    from cloche.pipelines.approvals import decide

    gated = _approval_pipeline()
    started = start_run(store, gated, {}, actor="t")
    results = []
    runner = threading.Thread(
        target=lambda: results.append(
            execute_run(store, started.id, gated.components, root=tmp_path)
        )
    )
    runner.start()
    _wait_for(store, started.id, "waiting")
    decide(store, started.id, "approval", approved=approve, actor="alice", comment="looks good")
    runner.join(30)
    result = results[0]
    assert result.state == "succeeded"
    assert result.latest()[("approval", -1)].outputs == {
        "approved": approve, "decided_by": "alice", "comment": "looks good"
    }  # fmt: skip
    states = result.step_states()
    assert (states["label"], states["label-2"]) == (
        ("succeeded", "skipped") if approve else ("skipped", "succeeded")
    )
    entry = list_audit(store, resource=f"{started.id}/approval")[0]
    assert entry.actor == "alice"
    assert entry.action == ("pipeline.approve" if approve else "pipeline.reject")


def test_an_approval_no_one_decides_fails_its_step_when_it_times_out(
    store: Store, tmp_path: Path
) -> None:
    gated = _approval_pipeline(timeout=0.3)
    result = run(store, tmp_path, gated)
    assert result.state == "failed"
    assert (
        "no one approved or rejected step 'approval' within 0.3 s"
        in result.latest()[("approval", -1)].error
    )


def test_a_decision_for_a_step_not_waiting_is_refused(store: Store, tmp_path: Path) -> None:
    from cloche.errors import NotWaitingForApproval
    from cloche.pipelines.approvals import decide

    done = run(store, tmp_path, scoring())
    with pytest.raises(NotWaitingForApproval, match="is not an approval waiting"):
        decide(store, done.id, "summarise", approved=True, actor="bob")


@component
def cancel_own_run(marker: str) -> str:
    import cloche

    with cloche.Client() as client:  # CLOCHE_HOME: the store this run is recorded in
        [running] = client.pipelines.runs(state="running")
        client.pipelines.cancel(running.id)
    return marker


def test_a_run_cancelled_while_it_runs_here_starts_no_further_step(
    store: Store, tmp_path: Path
) -> None:
    @pipeline(name="cancelled-here")
    def cancelled_here() -> None:
        first = cancel_own_run(marker="asked")
        label(text=first.output)

    result = run(store, tmp_path, cancelled_here)
    assert result.state == "cancelled" and result.error.startswith("cancelled by ")
    # The step that asked ran to its end; the step after it never started.
    assert result.step_states() == {"cancel_own_run": "succeeded", "label": "cancelled"}
    [never] = [r for r in result.steps if r.step == "label"]
    assert never.error == "not run: the run was cancelled"
