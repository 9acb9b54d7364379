"""Artifacts a pipeline step reads or writes: a file or folder with a URI and metadata.

``Input[Dataset]`` and ``Output[Model]`` in a component's signature are ``typing.Annotated``
aliases (as in Kubeflow Pipelines v2), so type checkers see a plain ``Dataset`` while the DSL
reads the direction from the annotation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar


class Artifact:
    """A file or folder a step makes, with metadata; ``path`` is where it reads or writes."""

    type_name = "Artifact"

    def __init__(self, name: str = "", uri: str = "", metadata: dict[str, Any] | None = None):
        self.name = name
        self.uri = uri
        self.metadata: dict[str, Any] = dict(metadata or {})

    @property
    def path(self) -> str:
        return self.uri.removeprefix("file://")

    @path.setter
    def path(self, value: str | Path) -> None:
        self.uri = str(value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, uri={self.uri!r})"


class Dataset(Artifact):
    type_name = "Dataset"


class Model(Artifact):
    type_name = "Model"


class Metrics(Artifact):
    """Named scalar metrics of a step (an evaluation's AUC, a drift check's worst distance)."""

    type_name = "Metrics"

    def log_metric(self, name: str, value: float) -> None:
        self.metadata[name] = float(value)


ARTIFACT_TYPES: dict[str, type[Artifact]] = {
    cls.type_name: cls for cls in (Artifact, Dataset, Model, Metrics)
}


class InputMarker:
    """The mark ``Input[...]`` puts on an artifact parameter: the step reads it."""


class OutputMarker:
    """The mark ``Output[...]`` puts on an artifact parameter: the step writes it."""


T = TypeVar("T", bound=Artifact)
Input = Annotated[T, InputMarker]
Output = Annotated[T, OutputMarker]


def accepts(wanted: str, given: str) -> bool:
    """Whether an artifact of type ``given`` may feed an input typed ``wanted``."""
    return wanted == given or wanted == Artifact.type_name
