"""bench/_charts.py: the SVG bar charts the benchmarks write for the docs."""

from __future__ import annotations

import importlib.util
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]
SVG = "{http://www.w3.org/2000/svg}"


def _load() -> ModuleType:
    # bench/ is a folder of scripts, not a package: load the helper as the scripts import it.
    spec = importlib.util.spec_from_file_location("bench_charts", ROOT / "bench" / "_charts.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


charts = _load()


def _chart(**overrides: object) -> object:
    options: dict[str, object] = {
        "title": "requests/s <cloche & baseline>",
        "unit": "requests/s",
        "categories": ["logreg 1 row", "hgb 1 row"],
        "series": {"baseline": [3799.0, 714.0], "cloche": [22050.0, 14147.0]},
        "caption": "bench/serving.py --quick — 2026-12-07, x86_64, 2 cores",
    }
    return charts.Chart(**(options | overrides))


def _bars(root: ET.Element) -> dict[str, ET.Element]:
    """Each bar by its tooltip ("category, series: value")."""
    return {
        title.text or "": rect
        for rect in root.iter(f"{SVG}rect")
        if (title := rect.find(f"{SVG}title")) is not None
    }


def _num(element: ET.Element, attribute: str) -> float:
    return float(element.get(attribute) or "nan")


def test_each_value_is_a_bar_whose_length_is_proportional_to_it() -> None:
    root = ET.fromstring(charts.render(_chart()))  # well-formed XML, title escaped
    bars = _bars(root)
    assert len(bars) == 4
    cloche = _num(bars["logreg 1 row, cloche: 22,050.00"], "width")
    baseline = _num(bars["logreg 1 row, baseline: 3,799.00"], "width")
    assert cloche / baseline == pytest.approx(22050 / 3799, rel=0.01)
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "requests/s <cloche & baseline>" in texts
    assert "logreg 1 row" in texts and "hgb 1 row" in texts
    assert "22,050.00" in texts  # each bar is labelled with its value
    assert any(t and "bench/serving.py --quick" in t for t in texts)  # the caption says how


def test_the_svg_fetches_nothing() -> None:
    svg = charts.render(_chart())
    assert "<script" not in svg
    assert not re.search(r"(href|src)=", svg)
    assert svg.count("http") == 1  # the xmlns only


def test_a_reference_line_is_drawn_where_its_value_falls() -> None:
    chart = _chart(series={"ratio": [5.8, 19.8]}, reference=1.0, reference_label="1.0")
    root = ET.fromstring(charts.render(chart))
    (line,) = [ln for ln in root.iter(f"{SVG}line") if ln.get("stroke") == "#dc2626"]
    bar = _bars(root)["logreg 1 row, ratio: 5.80"]
    to_line = _num(line, "x1") - _num(bar, "x")
    assert to_line * 5.8 == pytest.approx(_num(bar, "width"), rel=0.01)


def test_a_series_of_the_wrong_length_or_a_negative_value_is_refused() -> None:
    with pytest.raises(ValueError, match="has 1 values for 2 categories"):
        _chart(series={"cloche": [1.0]})
    with pytest.raises(ValueError, match="negative or non-finite"):
        _chart(series={"cloche": [1.0, float("nan")]})


@pytest.mark.parametrize(
    ("top", "step"), [(0.9, 0.2), (22050, 5000), (19.8, 5), (1.0, 0.2), (130, 50)]
)
def test_grid_steps_are_round_numbers(top: float, step: float) -> None:
    assert charts.nice_step(top) == pytest.approx(step)


def test_write_puts_the_chart_in_the_folder_given(tmp_path: Path) -> None:
    path = charts.write(_chart(), "serving", tmp_path)
    assert path == tmp_path / "serving.svg"
    assert path.read_text().startswith("<svg")


def test_the_caption_names_the_command_the_date_and_the_machine() -> None:
    text = charts.caption("bench/batch.py --rows 200000", "a short run")
    assert text.startswith("bench/batch.py --rows 200000 — 20")
    assert "cores" in text and text.endswith("; a short run")
