"""A pipeline's graph as SVG, its steps coloured by state: what a notebook shows for a pipeline
or a run (``_repr_html_``), drawn here with no JavaScript and nothing fetched."""

from __future__ import annotations

from html import escape

from cloche.pipelines.graph import PipelineGraph

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 170, 46, 60, 18, 16
COLOURS = {
    "pending": ("#ffffff", "#9ca3af"),
    "running": ("#dbeafe", "#2563eb"),
    "waiting": ("#fef3c7", "#d97706"),
    "succeeded": ("#dcfce7", "#16a34a"),
    "cached": ("#ccfbf1", "#0d9488"),
    "failed": ("#fee2e2", "#dc2626"),
    "skipped": ("#f3f4f6", "#9ca3af"),
    "cancelled": ("#f3f4f6", "#6b7280"),
}


def layers(graph: PipelineGraph) -> list[list[str]]:
    """Steps by column: each one column right of its furthest upstream step."""
    dependencies = graph.dependencies()
    depth: dict[str, int] = {}
    for step in graph.order():
        depth[step] = 1 + max((depth[up] for up in dependencies[step]), default=-1)
    columns: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for step in graph.order():
        columns[depth[step]].append(step)
    return columns


def graph_svg(
    graph: PipelineGraph, states: dict[str, str] | None = None, *, description: str = ""
) -> str:
    """The graph left to right; ``states`` maps a step (``name`` or ``name[i]``) to its state.
    A ``description`` becomes the image's title and desc, for a screen reader (the console)."""
    columns = layers(graph)
    place: dict[str, tuple[int, int]] = {}
    for x, column in enumerate(columns):
        for y, step in enumerate(column):
            place[step] = (PAD + x * (BOX_W + GAP_X), PAD + y * (BOX_H + GAP_Y))
    width = PAD * 2 + len(columns) * BOX_W + max(len(columns) - 1, 0) * GAP_X
    height = PAD * 2 + max((len(c) for c in columns), default=0) * (BOX_H + GAP_Y) - GAP_Y
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" {_label(graph, states, description)} '
        'font-family="system-ui, sans-serif">',
        _title(graph, states, description),
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" '
        'markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#6b7280"/></marker>'
        "</defs>",
    ]
    dependencies = graph.dependencies()
    for step, ups in dependencies.items():
        x2, y2 = place[step]
        for up in sorted(ups):
            x1, y1 = place[up]
            ax, ay, bx, by = x1 + BOX_W, y1 + BOX_H / 2, x2 - 2, y2 + BOX_H / 2
            bend = GAP_X * 0.6
            parts.append(
                f'<path class="edge" d="M{ax},{ay} C{ax + bend},{ay} {bx - bend},{by} {bx},{by}" '
                'fill="none" stroke="#6b7280" marker-end="url(#arrow)"/>'
            )
    for step, (x, y) in place.items():
        parts.append(_box(graph, step, x, y, _state(step, states)))
    parts.append("</svg>")
    return "".join(parts)


def _label(graph: PipelineGraph, states: dict[str, str] | None, description: str) -> str:
    if not description:
        return f'aria-label="pipeline {escape(graph.name)}"'
    return 'aria-labelledby="graph-title graph-desc"'


def _title(graph: PipelineGraph, states: dict[str, str] | None, description: str) -> str:
    """The title, and a desc naming each step and its state: the boxes' text, said in order."""
    if not description:
        return ""
    steps = [f"{step}: {_state(step, states) or 'defined'}" for step in graph.order()]
    return (
        f'<title id="graph-title">{escape(description)}</title>'
        f'<desc id="graph-desc">{escape("; ".join(steps))}</desc>'
    )


def _state(step: str, states: dict[str, str] | None) -> str:
    if states is None:
        return ""
    if step in states:
        return states[step]
    items = [s for key, s in states.items() if key.startswith(f"{step}[")]
    for worst in ("failed", "running", "waiting", "pending", "succeeded", "cached", "skipped"):
        if worst in items:
            return worst
    return "pending"


def _box(graph: PipelineGraph, step: str, x: int, y: int, state: str) -> str:
    task = graph.task(step)
    fill, stroke = COLOURS.get(state, ("#ffffff", "#6b7280"))
    detail = state or task.component
    if task.loop is not None:
        detail += " · per item"
    if task.exit_group is not None:
        detail += " · on exit"
    return (
        f'<g class="step" data-step="{escape(step)}" data-state="{escape(state)}">'
        f"<title>{escape(step)}: {escape(state or 'defined')}</title>"
        f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="8" fill="{fill}" '
        f'stroke="{stroke}" stroke-width="1.5"/>'
        f'<text x="{x + 10}" y="{y + 19}" font-size="13" font-weight="600">'
        f"{escape(_clip(step, 22))}</text>"
        f'<text x="{x + 10}" y="{y + 36}" font-size="11" fill="#4b5563">'
        f"{escape(_clip(detail, 28))}</text></g>"
    )


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
