"""A pipeline and a run draw themselves as SVG: every step in a column after its upstream
steps, one arrow per dependency, each step in its state's colours, text escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from cloche.pipelines import ExitHandler, If, ParallelFor, PipelineRun, component, pipeline
from cloche.pipelines.render import COLOURS, graph_svg, layers

SVG = "{http://www.w3.org/2000/svg}"


@component
def first(n: int) -> int:
    return n


@component
def second(n: int) -> int:
    return n


def sample():  # type: ignore[no-untyped-def]
    @pipeline(name="draw-me")
    def draw_me(label: str = "<b>&") -> None:
        done = second(n=0)
        with ExitHandler(done):
            a = first(n=1)
            b = second(n=a.output)
            with If(b.output > 0):
                first(n=2)
            with ParallelFor([1, 2]) as item:
                second(n=item)

    return draw_me


def _steps(svg: str) -> dict[str, str]:
    root = ET.fromstring(svg)
    return {g.get("data-step"): g.get("data-state") for g in root.iter(f"{SVG}g")}  # type: ignore[misc]


def test_columns_follow_dependencies() -> None:
    columns = layers(sample().graph)
    assert columns[0] == ["first", "second-3"]  # the loop over a constant list waits for none
    assert columns[1] == ["second-2"]
    assert columns[2] == ["first-2"]
    assert columns[-1] == ["second"]  # the exit step waits for its block


def test_the_pipeline_draws_every_step_and_every_dependency_as_valid_svg() -> None:
    pipe = sample()
    svg = pipe._repr_html_()
    root = ET.fromstring(svg)
    assert set(_steps(svg)) == {t.id for t in pipe.graph.tasks}
    edges = sum(len(up) for up in pipe.graph.dependencies().values())
    assert len([e for e in root.iter(f"{SVG}path") if e.get("class") == "edge"]) == edges
    assert "http" not in svg.replace("http://www.w3.org/2000/svg", "")  # nothing fetched


def test_a_run_colours_each_step_by_its_state_and_a_loop_by_its_worst_item() -> None:
    pipe = sample()
    states = {
        "first": "succeeded",
        "second-2": "cached",
        "first-2": "skipped",
        "second-3[0]": "succeeded",
        "second-3[1]": "failed",
        "second": "succeeded",
    }
    drawn = _steps(graph_svg(pipe.graph, states))
    assert drawn["second-3"] == "failed"
    assert drawn["second-2"] == "cached"
    svg = graph_svg(pipe.graph, states)
    assert COLOURS["failed"][1] in svg and COLOURS["cached"][0] in svg


def test_a_recorded_run_renders_its_graph_with_its_header() -> None:
    pipe = sample()
    run = PipelineRun(
        id="pr_1",
        pipeline="draw-me",
        source_hash=pipe.source_hash,
        params={},
        state="running",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        graph=pipe.graph.model_dump(mode="json"),
    )
    html = run._repr_html_()
    assert html.startswith("<p><b>draw-me</b> pr_1: running</p><svg")
    assert "graph" not in run.model_dump()  # JSON answers leave the graph out


def test_names_are_escaped() -> None:
    @component(name="a<b>")
    def odd(n: int) -> int:
        return n

    @pipeline(name="odd")
    def odd_pipeline() -> None:
        odd(n=1)

    svg = graph_svg(odd_pipeline.graph)
    ET.fromstring(svg)
    assert "a&lt;b&gt;" in svg


def test_a_description_gives_the_image_a_title_and_says_each_steps_state() -> None:
    pipe = sample()
    svg = graph_svg(pipe.graph, {"first": "failed"}, description="Run <1>")
    root = ET.fromstring(svg)
    assert root.get("aria-labelledby") == "graph-title graph-desc"
    assert root.find(f"{SVG}title").text == "Run <1>"  # type: ignore[union-attr]
    said = root.find(f"{SVG}desc").text or ""  # type: ignore[union-attr]
    assert "first: failed" in said and "second-2: pending" in said
    assert 'aria-label="pipeline draw-me"' in graph_svg(pipe.graph)  # a notebook's, unchanged
