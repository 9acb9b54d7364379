"""Pipelines in plain Python: ``@component`` steps wired by a ``@pipeline`` function.

    from cloche.pipelines import component, pipeline, Input, Output, Dataset, Metrics, If

    @component
    def evaluate(data: Input[Dataset], metrics: Output[Metrics]) -> float: ...

A pipeline is checked when it is defined (a wrong type or an unknown output names the step and
the field) and its graph is plain data with the hash of its source: see docs/guides/pipelines.md.
"""

from cloche.pipelines.artifacts import Artifact, Dataset, Input, Metrics, Model, Output
from cloche.pipelines.component import Component, component
from cloche.pipelines.dsl import Task
from cloche.pipelines.entities import PipelineRun
from cloche.pipelines.graph import PipelineGraph
from cloche.pipelines.groups import Elif, Else, ExitHandler, If, ParallelFor
from cloche.pipelines.pipeline import Pipeline, pipeline
from cloche.pipelines.runner import run

__all__ = [
    "Artifact",
    "Component",
    "Dataset",
    "Elif",
    "Else",
    "ExitHandler",
    "If",
    "Input",
    "Metrics",
    "Model",
    "Output",
    "ParallelFor",
    "Pipeline",
    "PipelineGraph",
    "PipelineRun",
    "Task",
    "component",
    "pipeline",
    "run",
]
