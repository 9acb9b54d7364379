"""Values flowing through a run: arguments resolved from parameters, outputs and loop items;
artifacts as stored records with a content hash; the cache key of a step."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cloche.errors import InvalidInput, PipelineDefinitionError
from cloche.pipelines.artifacts import ARTIFACT_TYPES, Artifact
from cloche.pipelines.dsl import matches
from cloche.pipelines.graph import Argument, ComponentSpec, PipelineGraph

Outputs = dict[tuple[str, int], dict[str, Any]]


def run_params(graph: PipelineGraph, given: dict[str, Any]) -> dict[str, Any]:
    """The run's parameters: ``given`` checked against the pipeline's, defaults filled in."""
    unknown = sorted(set(given) - set(graph.params))
    if unknown:
        raise InvalidInput(
            f"pipeline {graph.name!r} has no parameter {unknown[0]!r}",
            hint=f"its parameters: {', '.join(graph.params) or '(none)'}",
        )
    params: dict[str, Any] = {}
    for name, spec in graph.params.items():
        if name not in given:
            if not spec.optional:
                raise InvalidInput(
                    f"pipeline {graph.name!r} needs the parameter {name!r} ({spec.type})",
                    hint=f"pass it: --param {name}=...",
                )
            params[name] = spec.default
            continue
        value = given[name]
        if not (value is None and spec.optional) and not matches(spec.type, value):
            raise InvalidInput(
                f"pipeline {graph.name!r}, parameter {name!r} takes a {spec.type}, "
                f"not {type(value).__name__} {value!r}"
            )
        params[name] = value
    return params


def resolve(
    arg: Argument, *, params: dict[str, Any], outputs: Outputs, iteration: int, item: Any
) -> Any:
    if arg.kind == "constant":
        return arg.value
    if arg.kind == "param":
        return params[arg.name or ""]
    if arg.kind == "loop_item":
        if arg.key is None:
            return item
        if not isinstance(item, dict) or arg.key not in item:
            raise InvalidInput(f"the loop's item {item!r} has no key {arg.key!r}")
        return item[arg.key]
    produced = outputs.get((arg.task or "", iteration)) or outputs.get((arg.task or "", -1))
    if produced is None or arg.name not in produced:
        raise InvalidInput(f"step {arg.task!r} left no output {arg.name!r}")
    return produced[arg.name]


def artifact_object(name: str, record: dict[str, Any]) -> Artifact:
    cls = ARTIFACT_TYPES.get(record.get("type", "Artifact"), Artifact)
    return cls(name=name, uri=record["uri"], metadata=record.get("metadata") or {})


def artifact_record(artifact: Artifact, type_name: str, *, step: str) -> dict[str, Any]:
    path = Path(artifact.path)
    if not path.exists():
        raise InvalidInput(
            f"step {step!r} did not write its output artifact {artifact.name!r}",
            hint=f"write a file or folder at the artifact's .path ({path})",
        )
    return {
        "type": type_name,
        "uri": str(path),
        "metadata": json.loads(json.dumps(artifact.metadata, default=str)),
        "sha256": content_hash(path),
    }


def content_hash(path: Path) -> str:
    """sha256 of a file, or of a folder's relative paths and file hashes."""
    if path.is_file():
        return _file_hash(path)
    digest = hashlib.sha256()
    for child in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{child.relative_to(path).as_posix()}\0{_file_hash(child)}\0".encode())
    return digest.hexdigest()


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def intact(outputs: dict[str, Any]) -> bool:
    """Whether every artifact among a cached step's outputs is still there, unchanged."""
    for value in outputs.values():
        if isinstance(value, dict) and "sha256" in value and "uri" in value:
            path = Path(value["uri"])
            if not path.exists() or content_hash(path) != value["sha256"]:
                return False
    return True


def cache_key(spec: ComponentSpec, inputs: dict[str, Any]) -> str:
    shown = {
        name: value["sha256"] if name in spec.inputs else value for name, value in inputs.items()
    }
    body = {
        "source": spec.source_hash,
        "inputs": shown,
        "outputs": sorted([*spec.returns, *spec.outputs]),
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def check_returned(spec: ComponentSpec, step: str, value: Any) -> dict[str, Any]:
    """The step's returned value(s) by output name, checked against the declared types."""
    if not spec.returns:
        return {}
    if list(spec.returns) == ["output"]:
        values = {"output": value}
    else:
        if not isinstance(value, tuple) or len(value) != len(spec.returns):
            raise InvalidInput(f"step {step!r} must return {', '.join(spec.returns)}")
        values = dict(zip(spec.returns, value, strict=True))
    for name, type_tag in spec.returns.items():
        if not matches(type_tag, values[name]):
            raise InvalidInput(
                f"step {step!r} returned {type(values[name]).__name__} for {name!r}, "
                f"declared {type_tag}"
            )
        try:
            json.dumps(values[name])
        except (TypeError, ValueError):
            raise PipelineDefinitionError(
                f"step {step!r}: output {name!r} cannot be stored as JSON"
            ) from None
    return values
