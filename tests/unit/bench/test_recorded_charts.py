"""The charts beside performance.md's recorded tables show those tables' figures: each bench
parses its own printed table back (``--chart-from``), and the committed SVG holds the same values.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]
PAGE = (ROOT / "docs" / "performance.md").read_text()
BLOCKS = re.findall(r"```[a-z]*\n(.*?)```", PAGE, re.S)


def _bench(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))  # as when run: `from _charts import ...`
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def _block(first_line_start: str) -> str:
    """The first recorded table that starts so (the serving table's header recurs in later,
    smaller runs on the page: the full run is recorded first)."""
    return str(next(b for b in BLOCKS if b.lstrip().startswith(first_line_start)))


def _svg_values(name: str) -> list[str]:
    svg = (ROOT / "docs" / "img" / "bench" / f"{name}.svg").read_text()
    return re.findall(r"<title>[^<]*: ([^<]+)</title></rect>", svg)  # the bars


def test_the_serving_chart_shows_the_recorded_table(monkeypatch: pytest.MonkeyPatch) -> None:
    serving = _bench("serving", monkeypatch)
    ratios = serving.parse_ratios(_block("model    rows conns"))
    assert len(ratios) == 12
    assert ratios["hgb, 1 row, 64 conn"] == 19.82
    assert _svg_values("serving") == [f"{v:.2f}x" for v in ratios.values()]


def test_the_batch_charts_show_the_recorded_table(monkeypatch: pytest.MonkeyPatch) -> None:
    batch = _bench("batch", monkeypatch)
    results = batch.parse_results(_block("rows   seconds"))
    assert [r.name for r in results] == ["ideal", "cloche", "cloche 2x input"]
    assert [f"{r.rows_per_s:,.0f}" for r in results] == ["97,591", "100,998", "119,392"]
    assert _svg_values("batch-speed") == ["97,591", "100,998", "119,392"]
    assert _svg_values("batch-memory") == ["3,464", "3,417", "776", "604", "776", "603"]


def test_the_edge_charts_show_the_recorded_table(monkeypatch: pytest.MonkeyPatch) -> None:
    edge = _bench("edge", monkeypatch)
    rows = edge.parse_rows(_block("bundle     runtime MB"))
    assert rows == {"onnx": (117.6, 0.40), "onnx-whole": (150.9, 0.38), "native": (342.3, 1.89)}
    assert _svg_values("edge-size") == ["117.6 MB", "150.9 MB", "342.3 MB"]
    assert _svg_values("edge-cold-start") == ["0.40 s", "0.38 s", "1.89 s"]


def test_time_to_value_parses_its_printed_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    ttv = _bench("time_to_value", monkeypatch)
    printed = (
        "time to first prediction from a fresh start (warm uv cache)\n"
        "  cloche (clone + make demo)                  15.6 s\n"
        "  MLflow (venv + install + register)          28.3 s\n"
        "  ratio cloche / MLflow                       0.55\n"
    )
    assert ttv.parse_results(printed) == {"cloche": 15.6, "mlflow": 28.3}
    # The chart beside the table (warm cache column) shows the same.
    assert "warm uv cache" in _block("time to first prediction")
    assert _svg_values("time-to-value") == ["9.5 s", "22.5 s"]


def test_a_replay_without_a_note_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    serving = _bench("serving", monkeypatch)
    saved = tmp_path / "out.txt"
    saved.write_text(_block("model    rows conns"))
    monkeypatch.setattr(sys, "argv", ["serving.py", "--chart-from", str(saved)])
    with pytest.raises(SystemExit, match="needs --chart-note"):
        serving.main()
