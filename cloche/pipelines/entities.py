"""What the pipeline service returns: plain data shared by the CLI, SDK and REST."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from cloche.errors import InvalidInput

# queued: waiting for the server to run it (registered pipelines, schedules, alert triggers)
RUN_STATES = ("queued", "pending", "running", "waiting", "succeeded", "failed", "cancelled")
STEP_STATES = (
    "pending", "running", "waiting", "succeeded", "failed", "skipped", "cached", "cancelled"
)  # fmt: skip
FINAL_RUN_STATES = frozenset({"succeeded", "failed", "cancelled"})
DONE_STEP_STATES = frozenset({"succeeded", "cached"})


def step_key(text: str) -> tuple[str, int]:
    """``train`` or ``train[2]`` (a loop item, as ``step_states`` names them) as (step, item)."""
    name, bracket, rest = text.partition("[")
    if not bracket:
        return name, -1
    if not rest.endswith("]") or not rest[:-1].isdigit():
        raise InvalidInput(f"{text!r} is not a step", hint="write STEP or STEP[N], e.g. train[2]")
    return name, int(rest[:-1])


class StepRecord(BaseModel):
    step: str
    iteration: int = Field(default=-1, description="the loop item's index; -1 outside loops")
    attempt: int = 1
    state: str = Field(description=", ".join(STEP_STATES))
    cached_from: str | None = Field(default=None, description="the run whose outputs it reused")
    inputs: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    error: str = ""
    log: str = ""
    started_at: datetime | None = None
    ended_at: datetime | None = None

    @property
    def key(self) -> tuple[str, int]:
        return self.step, self.iteration


class PipelineRun(BaseModel):
    id: str
    pipeline: str
    source_hash: str
    params: dict[str, Any]
    state: str = Field(description=", ".join(RUN_STATES))
    executor: str = "inprocess"
    error: str = ""
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    created_by: str = ""
    trigger: str = Field(default="", description="schedule:ID or alert:ID when not a person")
    steps: list[StepRecord] = []
    # The graph as run, for drawing it; left out of JSON answers (it is the pipeline's own).
    graph: dict[str, Any] = Field(default={}, exclude=True, repr=False)

    @property
    def done(self) -> bool:
        return self.state in FINAL_RUN_STATES

    def latest(self) -> dict[tuple[str, int], StepRecord]:
        """Each step's (and loop item's) last attempt."""
        found: dict[tuple[str, int], StepRecord] = {}
        for record in sorted(self.steps, key=lambda r: r.attempt):
            found[record.key] = record
        return found

    def step_states(self) -> dict[str, str]:
        return {f"{s}[{i}]" if i >= 0 else s: r.state for (s, i), r in self.latest().items()}

    def _repr_html_(self) -> str:  # a notebook shows the graph, each step in its state
        from html import escape

        from cloche.pipelines.graph import PipelineGraph
        from cloche.pipelines.render import graph_svg

        header = f"<p><b>{escape(self.pipeline)}</b> {escape(self.id)}: {escape(self.state)}</p>"
        if not self.graph:
            return header
        return header + graph_svg(PipelineGraph.model_validate(self.graph), self.step_states())
