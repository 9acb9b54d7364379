"""How a step is called in this process: what it prints is its log, and the swapped
sys.stdout still behaves as the stream it wraps (a notebook's, which has more to it)."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from cloche.pipelines import executors


class NotebookStream:
    """What ipykernel's stream adds to a file: the cell its output belongs to."""

    def __init__(self) -> None:
        self.parent: dict[str, Any] = {}
        self.written: list[str] = []

    def write(self, text: str) -> int:
        self.written.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def set_parent(self, parent: dict[str, Any]) -> None:
        self.parent = parent


def shout(word: str) -> str:
    print(word.upper())
    return word


def test_a_step_run_in_a_notebook_leaves_its_stream_pointable_at_the_next_cell(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = NotebookStream()
    monkeypatch.setattr(sys, "stdout", stream)
    value, log = executors.call("inprocess", shout, {"word": "hi"}, {}, timeout=None, name="shout")
    assert (value, log) == ("hi", "HI\n") and stream.written == []  # the step's print: its log
    sys.stdout.set_parent({"msg_id": "next-cell"})  # as IPython does before each cell
    print("after the run")
    assert stream.parent == {"msg_id": "next-cell"}
    assert "".join(stream.written) == "after the run\n"
