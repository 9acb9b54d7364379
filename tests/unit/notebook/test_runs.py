"""A run started from a notebook runs in the background, recorded in the store; waiting or
watching it ends when the run ends, drawn as its graph with each step's final state."""

from __future__ import annotations

import re
import threading

import pytest

from cloche.config import Settings
from cloche.errors import InvalidInput
from cloche.notebook import RunHandle, start
from cloche.pipelines import component, pipeline

release = threading.Event()


@component
def held(n: int) -> int:
    release.wait(timeout=60)
    return n


@component
def double(n: int) -> int:
    return 2 * n


@pipeline(name="nb-small")
def small(n: int = 2) -> None:
    double(n=held(n=n).output)


def test_start_returns_at_once_and_wait_sees_the_run_end(settings: Settings) -> None:
    release.clear()
    handle = start(small, {"n": 3}, settings=settings)
    try:
        assert handle.refresh().state in ("pending", "running")  # held until released
        release.set()
        run = handle.wait(timeout=60)
    finally:
        release.set()
        handle.close()
    assert run.state == "succeeded"
    assert run.step_states() == {"held": "succeeded", "double": "succeeded"}
    assert run.latest()[("double", -1)].outputs["output"] == 6


def test_the_run_draws_as_its_graph_with_step_states(settings: Settings) -> None:
    release.set()
    handle = start(small, settings=settings)
    handle.wait(timeout=60)
    html = handle._repr_html_()
    handle.close()
    steps = dict(re.findall(r'data-step="([^"]+)" data-state="([^"]+)"', html))
    assert steps == {"held": "succeeded", "double": "succeeded"}
    assert "<script" not in html


def test_a_run_seen_by_its_id_reads_the_same_record(settings: Settings) -> None:
    release.set()
    started = start(small, {"n": 1}, settings=settings)
    run = started.wait(timeout=60)
    started.close()
    again = RunHandle(run.id, settings)
    assert again.wait(timeout=60).step_states() == run.step_states()
    assert repr(again) == f"<pipeline run {run.id} of nb-small: succeeded>"
    again.close()


def test_a_bad_parameter_is_refused_before_anything_runs(settings: Settings) -> None:
    with pytest.raises(InvalidInput, match="n"):
        start(small, {"n": "three"}, settings=settings)


def test_watch_redraws_one_display_in_place_until_the_run_ends(settings: Settings) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    release.clear()
    InteractiveShell.instance()
    try:
        handle = start(small, {"n": 5}, settings=settings)
        threading.Timer(1.5, release.set).start()  # the first drawings show it still running
        with capture_output() as captured:
            run = handle.watch(timeout=60)
        handle.close()
    finally:
        release.set()
        InteractiveShell.clear_instance()
    assert run.state == "succeeded"
    drawn = [o.data["text/html"] for o in captured.outputs]
    assert len(drawn) >= 2
    ids = {o.transient["display_id"] for o in captured.outputs}
    assert len(ids) == 1  # one display, updated
    assert [o.update for o in captured.outputs] == [False] + [True] * (len(drawn) - 1)
    assert 'data-step="held" data-state="succeeded"' not in drawn[0]
    assert (
        'data-step="double" data-state="succeeded"' in drawn[-1] and ": succeeded</p>" in drawn[-1]
    )


def test_outside_ipython_watch_only_waits(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    release.set()
    handle = start(small, {"n": 4}, settings=settings)
    run = handle.watch(timeout=60)
    handle.close()
    assert run.state == "succeeded" and capsys.readouterr().out == ""
