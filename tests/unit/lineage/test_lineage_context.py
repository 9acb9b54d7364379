"""The step context: RUN/STEP parsed or refused, carried into the thread a step runs in, and sent
as a header only while a step runs."""

from __future__ import annotations

import threading

import pytest

from cloche.errors import InvalidInput
from cloche.lineage.context import HEADER, StepRef, bound, current, headers, parse


@pytest.mark.parametrize(
    ("text", "step"),
    [
        ("pr_3f2a9c0b1d2e/deploy_model", StepRef("pr_3f2a9c0b1d2e", "deploy_model")),
        ("pr_3f2a/score[2]", StepRef("pr_3f2a", "score[2]")),
        ("pr_3f2a/set_traffic-2", StepRef("pr_3f2a", "set_traffic-2")),
    ],
)
def test_run_slash_step_is_parsed(text: str, step: StepRef) -> None:
    assert parse(text) == step
    assert str(step) == text


@pytest.mark.parametrize(
    "text", ["", "deploy_model", "pr_3f2a/", "pr_3f2a/a/b", "run/deploy", "pr_3f2a/x[y]"]
)
def test_anything_else_is_refused_with_the_form_to_write(text: str) -> None:
    with pytest.raises(InvalidInput, match="is not RUN/STEP") as caught:
        parse(text)
    assert caught.value.hint is not None and "pr_" in caught.value.hint


def test_a_bound_function_sees_its_step_in_a_thread_of_its_own_and_nothing_leaks_after() -> None:
    seen: list[StepRef | None] = []

    def step() -> dict[str, str]:
        seen.append(current())
        return headers()

    call = bound(step, "pr_00aa", "train[1]")
    box: dict[str, dict[str, str]] = {}
    thread = threading.Thread(target=lambda: box.update(sent=call()))
    thread.start()
    thread.join()
    assert seen == [StepRef("pr_00aa", "train[1]")]
    assert box["sent"] == {HEADER: "pr_00aa/train[1]"}
    assert current() is None and headers() == {}
