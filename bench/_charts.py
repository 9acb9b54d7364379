"""A dependency-free SVG bar chart, so each benchmark draws its own figures for the docs.

Horizontal grouped bars: one group per category (a row of the benchmark's table), one bar per
series (baseline, cloche, ...), each labelled with its value; an optional reference line (a
goal, or 1.0 for a ratio) and a caption saying which command made the figures, when and where.
The SVG is plain text with no script, font or image to fetch, so the docs site embeds it as is.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

CHART_DIR = Path(__file__).resolve().parent.parent / "docs" / "img" / "bench"
PALETTE = ("#9aa5b1", "#1f6feb", "#d97706", "#16a34a", "#9333ea")
WIDTH = 760
CHAR_W = 6.8  # about one character's width at 12 px, to size the label column
VALUE_W = 70  # room for the value printed after the longest bar
BAR_H = 16
BAR_GAP = 3
GROUP_GAP = 12
FONT = "font-family='system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif'"


@dataclass
class Chart:
    title: str
    unit: str  # what the axis counts, e.g. "requests/s"
    categories: Sequence[str]
    series: dict[str, Sequence[float]]  # name -> one value per category
    caption: str = ""  # which command, when, on what machine
    reference: float | None = None  # a vertical line: a goal, or 1.0 for a ratio
    reference_label: str = ""
    fmt: Callable[[float], str] = field(default=lambda v: f"{v:,.2f}")

    def __post_init__(self) -> None:
        if not self.categories or not self.series:
            raise ValueError("a chart needs at least one category and one series")
        for name, values in self.series.items():
            if len(values) != len(self.categories):
                raise ValueError(
                    f"series {name!r} has {len(values)} values for {len(self.categories)} "
                    "categories"
                )
            if any(not math.isfinite(v) or v < 0 for v in values):
                raise ValueError(f"series {name!r} has a negative or non-finite value")


def caption(command: str, note: str = "") -> str:
    """``command``, today's date and this machine (with its load: a shared machine's figures
    move with it), for a chart's caption."""
    today = datetime.now(UTC).date().isoformat()
    machine = f"{platform.machine()}, {_cores()} cores, load average {os.getloadavg()[0]:.1f}"
    return f"{command} — {today}, {machine}" + (f"; {note}" if note else "")


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def nice_step(top: float, ticks: int = 5) -> float:
    """A round grid step (1, 2 or 5 times a power of ten) giving about ``ticks`` lines."""
    if top <= 0:
        return 1.0
    raw = top / ticks
    power = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 5, 10):
        if raw <= multiple * power:
            return multiple * power
    return 10 * power  # pragma: no cover - the loop always returns


def render(chart: Chart) -> str:
    n_series = len(chart.series)
    group_h = n_series * BAR_H + (n_series - 1) * BAR_GAP
    legend_h = 22 if n_series > 1 else 0
    top = 40 + legend_h
    plot_h = len(chart.categories) * (group_h + GROUP_GAP)
    caption_lines = _wrap(chart.caption, 110) if chart.caption else []
    height = top + plot_h + 30 + 16 * len(caption_lines) + 8
    label_w = max(100, round(CHAR_W * max(len(c) for c in chart.categories)) + 16)
    plot_w = WIDTH - label_w - VALUE_W
    # One series: the cloche blue; several: grey first (the baseline), then the others.
    colors = PALETTE[1:] if n_series == 1 else PALETTE
    largest = max(max(values) for values in chart.series.values())
    if chart.reference is not None:
        largest = max(largest, chart.reference)
    step = nice_step(largest)
    scale_top = step * math.ceil(largest / step) if largest > 0 else 1.0

    def x(value: float) -> float:
        return label_w + plot_w * value / scale_top

    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height}' "
        f"viewBox='0 0 {WIDTH} {height}' role='img' aria-label={quoteattr(chart.title)}>",
        f"<title>{escape(chart.title)}</title>",
        f"<rect width='{WIDTH}' height='{height}' fill='#ffffff'/>",
        f"<text x='12' y='24' font-size='16' font-weight='600' {FONT}>{escape(chart.title)}</text>",
    ]
    if n_series > 1:
        lx = label_w
        for i, name in enumerate(chart.series):
            color = colors[i % len(colors)]
            out.append(f"<rect x='{lx}' y='{top - 24}' width='12' height='12' fill='{color}'/>")
            out.append(
                f"<text x='{lx + 16}' y='{top - 14}' font-size='12' {FONT}>{escape(name)}</text>"
            )
            lx += 24 + 7 * len(name)
    # Grid and axis values.
    ticks = round(scale_top / step)
    for i in range(ticks + 1):
        value = step * i
        gx = x(value)
        out.append(
            f"<line x1='{gx:.1f}' y1='{top - 4}' x2='{gx:.1f}' y2='{top + plot_h}' "
            "stroke='#e5e7eb' stroke-width='1'/>"
        )
        out.append(
            f"<text x='{gx:.1f}' y='{top + plot_h + 14}' font-size='11' fill='#6b7280' "
            f"text-anchor='middle' {FONT}>{escape(_tick(value, step))}</text>"
        )
    out.append(
        f"<text x='{label_w + plot_w / 2:.1f}' y='{top + plot_h + 28}' font-size='11' "
        f"fill='#374151' text-anchor='middle' {FONT}>{escape(chart.unit)}</text>"
    )
    # Bars, a group per category.
    for c, category in enumerate(chart.categories):
        gy = top + c * (group_h + GROUP_GAP)
        out.append(
            f"<text x='{label_w - 8}' y='{gy + group_h / 2 + 4:.1f}' font-size='12' "
            f"text-anchor='end' {FONT}>{escape(category)}</text>"
        )
        for s, (name, values) in enumerate(chart.series.items()):
            value = values[c]
            by = gy + s * (BAR_H + BAR_GAP)
            width = max(x(value) - label_w, 0.5)
            color = colors[s % len(colors)]
            out.append(
                f"<rect x='{label_w}' y='{by}' width='{width:.1f}' height='{BAR_H}' "
                f"fill='{color}'><title>{escape(f'{category}, {name}: {chart.fmt(value)}')}"
                "</title></rect>"
            )
            out.append(
                f"<text x='{label_w + width + 4:.1f}' y='{by + BAR_H - 4}' font-size='11' "
                f"{FONT}>{escape(chart.fmt(value))}</text>"
            )
    if chart.reference is not None:
        rx = x(chart.reference)
        out.append(
            f"<line x1='{rx:.1f}' y1='{top - 4}' x2='{rx:.1f}' y2='{top + plot_h}' "
            "stroke='#dc2626' stroke-width='1.5' stroke-dasharray='5,3'/>"
        )
        if chart.reference_label:
            out.append(
                f"<text x='{rx + 4:.1f}' y='{top + plot_h - 4}' font-size='11' fill='#dc2626' "
                f"{FONT}>{escape(chart.reference_label)}</text>"
            )
    for i, line in enumerate(caption_lines):
        out.append(
            f"<text x='12' y='{top + plot_h + 48 + 16 * i}' font-size='11' fill='#4b5563' "
            f"{FONT}>{escape(line)}</text>"
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write(chart: Chart, name: str, directory: Path = CHART_DIR) -> Path:
    """Write ``chart`` as ``directory/name.svg`` and say where."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.svg"
    path.write_text(render(chart))
    print(f"chart: {path}")
    return path


def _tick(value: float, step: float) -> str:
    if step >= 1:
        return f"{value:,.0f}"
    decimals = max(0, -math.floor(math.log10(step)))
    return f"{value:.{decimals}f}"


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line] if line else lines


def command_line() -> str:
    """How this benchmark was started, as a reader would type it."""
    script = Path(sys.argv[0])
    with contextlib.suppress(ValueError):  # run from elsewhere: keep the path as typed
        script = script.resolve().relative_to(CHART_DIR.parents[2])
    return " ".join([".venv/bin/python", str(script), *sys.argv[1:]])


def add_replay_options(parser: argparse.ArgumentParser) -> None:
    """``--chart-from FILE --chart-note TEXT``: chart a saved run's printed table, no run."""
    parser.add_argument(
        "--chart-from",
        type=Path,
        metavar="FILE",
        help="write the chart from this script's saved output instead of running",
    )
    parser.add_argument(
        "--chart-note",
        default="",
        help="with --chart-from: when, where and how that output was measured (the caption)",
    )


def replay_caption(args: argparse.Namespace) -> str:
    if not args.chart_note:
        raise SystemExit("--chart-from needs --chart-note: when, where and how it was measured")
    return f"Figures from a saved run's output: {args.chart_note}"
