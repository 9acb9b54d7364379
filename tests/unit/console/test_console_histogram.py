"""The histogram SVG: what a reader is told, the bars' heights, and refusing bad bins."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from cloche.console.charts.histogram import HEIGHT, Bins, describe, numeric_labels, render

SVG = "{http://www.w3.org/2000/svg}"


def _bins() -> Bins:
    return Bins(labels=["a", "b", "c"], baseline=[0.5, 0.3, 0.2], window=[0.1, 0.2, 0.7])


def test_numeric_edges_become_the_bins_they_bound() -> None:
    assert numeric_labels([-1.0, 0.0, 1.5]) == ["< -1", "-1 to 0", "0 to 1.5", "≥ 1.5"]
    assert numeric_labels([]) == ["all"]


def test_the_svg_is_an_image_with_a_title_and_a_description() -> None:
    root = ET.fromstring(str(render(_bins(), title="spend <baseline>", ident="h1")))
    assert root.get("role") == "img" and root.get("aria-labelledby") == "h1-title h1-desc"
    assert root.find(f"{SVG}title").text == "spend <baseline>"  # type: ignore[union-attr]
    desc = root.find(f"{SVG}desc").text  # type: ignore[union-attr]
    assert desc == "3 bins. The largest difference is in bin c: baseline 20.0%, window 70.0%."


def test_each_bar_is_as_tall_as_its_share_and_says_it() -> None:
    root = ET.fromstring(str(render(_bins(), title="t", ident="h1")))
    bars = [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    said = [r.find(f"{SVG}title").text for r in bars]  # type: ignore[union-attr]
    assert said[:2] == ["a: baseline 50.0%", "a: window 10.0%"] and len(bars) == 6
    heights = {t: float(r.get("height", "0")) for t, r in zip(said, bars, strict=True)}
    tallest = heights["c: window 70.0%"]
    assert heights["a: baseline 50.0%"] == pytest.approx(tallest * 5 / 7, abs=0.1)
    assert all(0 <= h <= HEIGHT for h in heights.values())


def test_the_window_differs_from_the_baseline_by_pattern_not_colour_alone() -> None:
    svg = str(render(_bins(), title="t", ident="h7"))
    assert 'pattern id="h7-hatch"' in svg
    assert len(re.findall(r'class="bar bar-window"[^>]*fill="url\(#h7-hatch\)"', svg)) == 4


def test_labels_and_titles_are_escaped() -> None:
    bins = Bins(labels=["<script>"], baseline=[1.0], window=[0.0])
    svg = str(render(bins, title="<b>", ident="x"))
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "<b>" not in svg


@pytest.mark.parametrize(
    "bins",
    [
        Bins(labels=[], baseline=[], window=[]),
        Bins(labels=["a"], baseline=[0.5, 0.5], window=[1.0]),
    ],
)
def test_bins_without_a_share_on_each_side_are_refused(bins: Bins) -> None:
    with pytest.raises(ValueError, match="every bin"):
        render(bins, title="t", ident="x")


def test_an_all_zero_histogram_still_draws() -> None:
    bins = Bins(labels=["a", "b"], baseline=[0.0, 0.0], window=[0.0, 0.0])
    assert describe(bins).startswith("2 bins.")
    ET.fromstring(str(render(bins, title="t", ident="z")))
