"""What the run page draws from a run: its graph with each step's state, a timeline of step
attempts (bars in SVG, durations as text), approvals and who decided, and step artifacts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

from cloche.pipelines.entities import PipelineRun, StepRecord
from cloche.pipelines.graph import PipelineGraph
from cloche.pipelines.render import graph_svg

BAR_W, BAR_H = 240, 14


@dataclass(frozen=True)
class Attempt:
    """One step attempt as a timeline row."""

    key: str
    record: StepRecord
    seconds: float | None
    bar: str


def step_name(record: StepRecord) -> str:
    return f"{record.step}[{record.iteration}]" if record.iteration >= 0 else record.step


def run_graph(run: PipelineRun) -> str:
    """The run's graph, each step coloured and labelled with its state."""
    if not run.graph:
        return ""
    graph = PipelineGraph.model_validate(run.graph)
    text = f"Steps of run {run.id} of pipeline {run.pipeline}, left to right, with their states"
    return graph_svg(graph, run.step_states(), description=text)


def timeline(run: PipelineRun, now: datetime) -> list[Attempt]:
    """Every attempt in start order, its bar placed on the run's span (an open one ends now)."""
    timed = [r for r in run.steps if r.started_at is not None]
    if not timed:
        return [Attempt(step_name(r), r, None, "") for r in run.steps]
    start = min(_aware(r.started_at) for r in timed)
    end = max(_aware(r.ended_at or now) for r in timed)
    span = max((end - start).total_seconds(), 1e-3)
    rows = []
    for record in sorted(run.steps, key=lambda r: (r.started_at is None, _sort_time(r))):
        if record.started_at is None:
            rows.append(Attempt(step_name(record), record, None, ""))
            continue
        began, ended = _aware(record.started_at), _aware(record.ended_at or now)
        seconds = (ended - began).total_seconds()
        left = (began - start).total_seconds() / span * BAR_W
        width = max(seconds / span * BAR_W, 2.0)
        left = min(left, BAR_W - width)  # a sliver at the very end stays on the track
        rows.append(Attempt(step_name(record), record, seconds, _bar(record, left, width)))
    return rows


def _sort_time(record: StepRecord) -> float:
    return _aware(record.started_at).timestamp() if record.started_at else 0.0


def _aware(moment: datetime | None) -> datetime:
    assert moment is not None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _bar(record: StepRecord, left: float, width: float) -> str:
    label = f"{step_name(record)} attempt {record.attempt}: {record.state}"
    return (
        f'<svg class="bar" width="{BAR_W}" height="{BAR_H}" viewBox="0 0 {BAR_W} {BAR_H}" '
        f'role="img" aria-label="{escape(label)}"><rect class="track" x="0" y="0" '
        f'width="{BAR_W}" height="{BAR_H}" fill="#f3f4f6"/>'
        f'<rect x="{left:.1f}" y="1" width="{width:.1f}" height="{BAR_H - 2}" rx="2" '
        f'fill="{_FILL.get(record.state, "#6b7280")}"/></svg>'
    )


_FILL = {
    "running": "#2563eb",
    "waiting": "#d97706",
    "succeeded": "#16a34a",
    "cached": "#0d9488",
    "failed": "#dc2626",
}


def approvals(run: PipelineRun) -> list[dict[str, Any]]:
    """Each approval step's last attempt: waiting for a decision, or who decided and how."""
    if not run.graph:
        return []
    graph = PipelineGraph.model_validate(run.graph)
    gates = {t.id for t in graph.tasks if graph.components[t.component].kind == "approval"}
    found = []
    for (step, _), record in sorted(run.latest().items()):
        if step in gates:
            message = record.inputs.get("message", "")
            found.append({"step": step_name(record), "record": record, "message": message})
    return found


def artifacts(record: StepRecord) -> list[tuple[str, dict[str, Any]]]:
    """The outputs that are artifacts (a record with a type and a uri), by output name."""
    return [
        (name, value)
        for name, value in record.outputs.items()
        if isinstance(value, dict) and "uri" in value and "type" in value
    ]


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "not started"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"
