"""The runtime protocol: one adapter per framework, all alike.

``load(artifact_dir) -> LoadedModel``; ``LoadedModel.predict(X)`` and, where the framework has
them, ``predict_proba(X)`` and ``explain(X)`` (per-feature contributions plus a bias column).
``X`` is a 2-D ``numpy.ndarray`` or a ``pandas.DataFrame`` whose columns follow the signature
(tensor models take an ndarray). Runtimes know nothing of requests, protocols or settings.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from cloche.errors import MissingDependency
from cloche.signatures import Signature


@runtime_checkable
class LoadedModel(Protocol):
    """A model in memory, ready to predict."""

    framework: str

    def predict(self, X: Any) -> np.ndarray: ...

    def signature(self) -> Signature:
        """What the model itself knows of its inputs, outputs, task and classes."""
        ...


class Runtime(Protocol):
    """A framework adapter."""

    name: str
    extra: str  # the pip extra that installs the framework, for error messages

    def load(self, artifact_dir: Path) -> LoadedModel: ...


def has_predict_proba(model: LoadedModel) -> bool:
    return callable(getattr(model, "predict_proba", None))


def has_explain(model: LoadedModel) -> bool:
    """Whether the runtime computes attributions itself (TreeSHAP for XGBoost and LightGBM)."""
    return callable(getattr(model, "explain", None))


def require(module: str, *, extra: str, framework: str) -> Any:
    """Import a framework module or raise a MissingDependency that names the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(
            f"the {framework} runtime needs the Python package '{module}', which is not installed",
            hint=f"pip install 'cloche[{extra}]'",
        ) from exc


def single_file(artifact_dir: Path, suffixes: tuple[str, ...]) -> Path:
    """The one model file in a version's artifact folder with one of ``suffixes``."""
    from cloche.errors import ArtifactNotFound

    if artifact_dir.is_file():
        return artifact_dir
    matches = sorted(
        p for p in artifact_dir.rglob("*") if p.is_file() and p.suffix.lower() in suffixes
    )
    if not matches:
        raise ArtifactNotFound(
            f"no file ending in {', '.join(suffixes)} in {artifact_dir}",
            hint="upload the model file itself, or pass --framework to say what it is",
        )
    return matches[0]
