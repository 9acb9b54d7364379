"""``@pipeline``: a function wiring steps becomes a checked, hashable graph when it is defined."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

from cloche.errors import PipelineDefinitionError
from cloche.pipelines.component import Component, function_source, param_type
from cloche.pipelines.dsl import Builder, building, done_building, param_ref
from cloche.pipelines.graph import ParamSpec, PipelineGraph, check_graph, source_hash
from cloche.registry.refs import check_name


class Pipeline:
    """A defined pipeline: its graph (``.graph``, plain data) and its components' functions."""

    def __init__(self, func: Callable[..., Any], name: str, description: str) -> None:
        check_name(name)
        self.python_func = func
        self.name = name
        builder = Builder(name=name, params=pipeline_params(func, name))
        token = building(builder)
        try:
            func(**{p: param_ref(p, spec) for p, spec in builder.params.items()})
        finally:
            done_building(token)
        if not builder.tasks:
            raise PipelineDefinitionError(f"pipeline {name!r} has no step")
        self.components: dict[str, Component] = dict(builder.components)
        self.graph = PipelineGraph(
            name=name,
            description=description or inspect.getdoc(func) or "",
            params=builder.params,
            components={n: c.spec for n, c in sorted(builder.components.items())},
            tasks=[t.spec() for t in builder.tasks.values()],
            branches=builder.branches,
            loops=builder.loops,
            exit_groups=builder.exit_groups,
            source_hash=source_hash(
                function_source(func),
                *(c.spec.source_hash for _, c in sorted(self.components.items())),
            ),
        )
        check_graph(self.graph)

    @property
    def source_hash(self) -> str:
        return self.graph.source_hash

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise PipelineDefinitionError(
            f"pipeline {self.name!r} is run, not called",
            hint="cloche pipelines run FILE.py, or client.pipelines.run(pipeline, params)",
        )

    def __repr__(self) -> str:
        return f"<pipeline {self.name}: {len(self.graph.tasks)} steps>"

    def _repr_html_(self) -> str:  # a notebook shows the graph
        from cloche.pipelines.render import graph_svg

        return graph_svg(self.graph)


@typing.overload
def pipeline(func: Callable[..., Any]) -> Pipeline: ...


@typing.overload
def pipeline(
    *, name: str | None = None, description: str = ""
) -> Callable[[Callable[..., Any]], Pipeline]: ...


def pipeline(
    func: Callable[..., Any] | None = None, *, name: str | None = None, description: str = ""
) -> Pipeline | Callable[[Callable[..., Any]], Pipeline]:
    """Define a pipeline from a function that calls components (``@pipeline(name=...)``)."""
    if func is None:
        return lambda f: Pipeline(f, name or f.__name__.replace("_", "-"), description)
    return Pipeline(func, name or func.__name__.replace("_", "-"), description)


def pipeline_params(func: Callable[..., Any], name: str) -> dict[str, ParamSpec]:
    hints = typing.get_type_hints(func)
    params: dict[str, ParamSpec] = {}
    for pname, parameter in inspect.signature(func).parameters.items():
        where = f"pipeline {name!r}, parameter {pname!r}"
        if pname not in hints:
            raise PipelineDefinitionError(f"{where} has no type hint")
        has_default = parameter.default is not inspect.Parameter.empty
        params[pname] = ParamSpec(
            type=param_type(hints[pname], where),
            default=parameter.default if has_default else None,
            optional=has_default,
        )
    return params
