"""Finding a pipeline in a Python file (``FILE.py`` or ``FILE.py:NAME``) and reading its
parameters from the command line's ``KEY=VALUE`` strings by their declared types."""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Any

from cloche.errors import InvalidInput, PipelineDefinitionError, PipelineNotFound
from cloche.pipelines.graph import ParamSpec, PipelineGraph
from cloche.pipelines.pipeline import Pipeline

TRUE, FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def load_pipeline(target: str) -> Pipeline:
    """The pipeline ``FILE.py[:NAME]`` defines (NAME: its name or variable; optional if one)."""
    file, _, name = target.partition(":") if not Path(target).exists() else (target, "", "")
    path = Path(file)
    if path.suffix != ".py" or not path.is_file():
        raise InvalidInput(
            f"{file!r} is not a Python file", hint="pass the .py file that defines the pipeline"
        )
    try:
        namespace = runpy.run_path(str(path), run_name=f"cloche_pipeline_{path.stem}")
    except PipelineDefinitionError:
        raise
    except Exception as exc:
        raise InvalidInput(
            f"{file} could not be imported: {type(exc).__name__}: {exc}",
            hint="run `python FILE.py` to see the full traceback",
        ) from None
    found = {var: p for var, p in namespace.items() if isinstance(p, Pipeline)}
    if name:
        for var, pipeline in found.items():
            if name in (var, pipeline.name):
                return pipeline
    elif len(found) == 1:
        return next(iter(found.values()))
    names = ", ".join(sorted(p.name for p in found.values())) or "none"
    raise PipelineNotFound(
        f"{file} defines {'no pipeline ' + repr(name) if name else 'several pipelines'} "
        f"(pipelines: {names})",
        hint=f"name one: {file}:NAME",
    )


def load_source(target: str) -> tuple[Pipeline, str, str]:
    """The pipeline ``FILE.py[:NAME]`` defines, with the file's source and name to register."""
    pipeline = load_pipeline(target)
    path = Path(target.partition(":")[0] if not Path(target).exists() else target)
    return pipeline, path.read_text(), path.name


def parse_params(
    graph: PipelineGraph | dict[str, ParamSpec], raw: dict[str, str]
) -> dict[str, Any]:
    """``KEY=VALUE`` strings converted by the parameter's declared type."""
    declared = graph.params if isinstance(graph, PipelineGraph) else graph
    params: dict[str, Any] = {}
    for key, text in raw.items():
        spec = declared.get(key)
        if spec is None:
            params[key] = text  # run_params names the unknown parameter
            continue
        params[key] = _convert(key, spec.type, text)
    return params


def _convert(key: str, type_tag: str, text: str) -> Any:
    try:
        if type_tag == "int":
            return int(text)
        if type_tag == "float":
            return float(text)
        if type_tag == "bool":
            if text.lower() not in TRUE | FALSE:
                raise ValueError(text)
            return text.lower() in TRUE
        if type_tag in ("dict", "list"):
            value = json.loads(text)
            if not isinstance(value, dict if type_tag == "dict" else list):
                raise ValueError(text)
            return value
    except ValueError:
        example = {"int": "3", "float": "0.8", "bool": "true", "dict": '{"a": 1}', "list": "[1, 2]"}
        raise InvalidInput(
            f"parameter {key!r} takes a {type_tag}, not {text!r}",
            hint=f"e.g. --param {key}={example.get(type_tag, '...')}",
        ) from None
    return text
