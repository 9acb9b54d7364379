"""Baseline against window: one feature's shares per bin as paired bars, in SVG.

Pure: data in, markup out. The picture has a title and a description (what a screen reader
says), each bar its share in a ``<title>`` (a tooltip), and the two series differ by pattern as
well as colour, so nothing is told by colour alone. Styling comes from console.css classes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 270
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 30, 90
MAX_LABEL = 18


@dataclass(frozen=True)
class Bins:
    """One feature's bins as the monitor stored them: labels and each side's share (0-1)."""

    labels: list[str]
    baseline: list[float]
    window: list[float]


def numeric_labels(edges: Sequence[float]) -> list[str]:
    """``[a, b]`` -> ``["< a", "a to b", "≥ b"]``: the bins the interior edges make."""
    shown = [f"{e:.3g}" for e in edges]
    if not shown:
        return ["all"]
    middle = [f"{lo} to {hi}" for lo, hi in itertools.pairwise(shown)]
    return [f"< {shown[0]}", *middle, f"≥ {shown[-1]}"]


def render(bins: Bins, *, title: str, ident: str) -> Markup:
    """The SVG of ``bins``; ``ident`` makes its title/desc ids unique in the page."""
    if not (len(bins.labels) == len(bins.baseline) == len(bins.window)) or not bins.labels:
        raise ValueError("every bin needs a label, a baseline share and a window share")
    # The axis tops at the next tenth above the tallest bar: round labels (0%, 20%, ...).
    top = max(math.ceil(max(*bins.baseline, *bins.window) * 10 - 1e-9) / 10, 0.1)
    slot = (WIDTH - LEFT - RIGHT) / len(bins.labels)
    bar = slot * 0.4
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg class="histogram" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{ident}-title {ident}-desc" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{ident}-title">{escape(title)}</title>',
        f'<desc id="{ident}-desc">{escape(describe(bins))}</desc>',
        _pattern(ident),
        *_axis(top, plot_h),
    ]
    for i, label in enumerate(bins.labels):
        x = LEFT + i * slot + slot * 0.1
        for offset, share, series, fill in (
            (0.0, bins.baseline[i], "baseline", ""),
            (bar, bins.window[i], "window", f' fill="url(#{ident}-hatch)"'),
        ):
            h = plot_h * share / top
            parts.append(
                f'<rect class="bar bar-{series}" x="{x + offset:.1f}" y="{TOP + plot_h - h:.1f}" '
                f'width="{bar:.1f}" height="{h:.1f}"{fill}>'
                f"<title>{escape(label)}: {series} {share:.1%}</title></rect>"
            )
        tx, ty = x + bar, HEIGHT - BOTTOM + 14
        parts.append(  # slanted: ten bins' labels fit side by side
            f'<text class="tick" x="{tx:.1f}" y="{ty}" text-anchor="end" '
            f'transform="rotate(-40 {tx:.1f} {ty})">{escape(_short(label))}</text>'
        )
    parts += _legend(ident)
    parts.append("</svg>")
    return Markup("".join(parts))


def describe(bins: Bins) -> str:
    """One sentence a screen reader says: where the two sides differ most."""
    gaps = [abs(b - w) for b, w in zip(bins.baseline, bins.window, strict=True)]
    i = max(range(len(gaps)), key=gaps.__getitem__)
    return (
        f"{len(bins.labels)} bins. The largest difference is in bin {bins.labels[i]}: "
        f"baseline {bins.baseline[i]:.1%}, window {bins.window[i]:.1%}."
    )


def _pattern(ident: str) -> str:
    return (
        f'<defs><pattern id="{ident}-hatch" class="hatch" width="6" height="6" '
        'patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        '<rect class="hatch-ground" width="6" height="6"/>'
        '<line class="hatch-line" x1="0" y1="0" x2="0" y2="6"/></pattern></defs>'
    )


def _axis(top: float, plot_h: float) -> list[str]:
    lines = []
    for step in range(5):
        share = top * step / 4
        y = TOP + plot_h - plot_h * step / 4
        lines.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">'
            f"{share:.0%}</text>"
        )
    return lines


def _legend(ident: str) -> list[str]:
    y = 14
    return [
        f'<rect class="bar bar-baseline" x="{LEFT}" y="{y - 9}" width="12" height="12"/>',
        f'<text class="legend" x="{LEFT + 16}" y="{y + 1}">baseline (solid)</text>',
        f'<rect class="bar bar-window" x="{LEFT + 150}" y="{y - 9}" width="12" height="12" '
        f'fill="url(#{ident}-hatch)"/>',
        f'<text class="legend" x="{LEFT + 166}" y="{y + 1}">window (hatched)</text>',
    ]


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1] + "…"
