"""Small helpers the framework adapters share: file lookup, input conversion, error wording."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from cloche.errors import ArtifactNotFound, CorruptArtifact, MissingDependency
from cloche.runtimes.base import single_file
from cloche.signatures import DTYPES, FieldSpec

_NATIVE_PREFIX = re.compile(r"^\[[\d:]+\] \S+:\d+: ")


def model_file(artifact_dir: Path, suffixes: tuple[str, ...]) -> Path:
    """The model file in ``artifact_dir``: one with a known suffix, else the folder's only file."""
    try:
        path = single_file(artifact_dir, suffixes)
    except ArtifactNotFound:
        if not artifact_dir.is_dir():
            raise
        # Detection sniffs content, so a model may have been uploaded under any name.
        files = [p for p in artifact_dir.iterdir() if p.is_file() and not p.name.startswith(".")]
        if len(files) != 1:
            raise
        path = files[0]
    if path.stat().st_size == 0:
        # Some native loaders abort the process on an empty buffer instead of raising.
        raise CorruptArtifact(f"{path.name} is empty", hint="upload the saved model file again")
    return path


def corrupt(path: Path, expected: str, exc: BaseException) -> CorruptArtifact:
    """A CorruptArtifact naming the file, what it should have been and the framework's reason."""
    lines = str(exc).strip().splitlines()
    # Native libraries prefix "[12:00:00] src/file.cc:42: "; the user needs only the message.
    reason = _NATIVE_PREFIX.sub("", lines[0])[:300] if lines else type(exc).__name__
    return CorruptArtifact(
        f"{path.name} is not {expected}: {reason}",
        hint="check that the file was saved completely by the framework named in --framework",
    )


def missing_module(filename: str, exc: ModuleNotFoundError) -> MissingDependency:
    """A model file that imports a module this environment lacks (a pickle's classes, say)."""
    return MissingDependency(
        f"{filename} needs the Python module '{exc.name}', which is not installed",
        hint="install the package that provides it where cloche serves the model",
    )


def is_frame(X: Any) -> bool:
    return hasattr(X, "columns") and hasattr(X, "to_numpy")


def to_numpy(X: Any, dtype: Any = None) -> np.ndarray:
    """``X`` (ndarray, DataFrame or nested lists) as one ndarray."""
    if is_frame(X):
        return np.asarray(X.to_numpy(dtype=dtype))
    return np.asarray(X, dtype=dtype)


def dtype_name(dtype: Any) -> str:
    """The signature dtype for a numpy dtype."""
    dt = np.dtype(dtype)
    if dt.kind in "OUS":
        return "string"
    if dt.kind == "M":
        return "datetime"
    return dt.name if dt.name in DTYPES else "float64"


def unnamed_input(n_features: int, dtype: str = "float64") -> FieldSpec:
    """The input of a model that knows its width but not its feature names: one 2-D tensor."""
    return FieldSpec(name="input", dtype=dtype, shape=(-1, n_features))


def classifier_outputs(
    label_dtype: str, n_classes: int, proba_dtype: str = "float64"
) -> tuple[FieldSpec, ...]:
    return (
        FieldSpec(name="predict", dtype=label_dtype, shape=(-1,)),
        FieldSpec(name="probabilities", dtype=proba_dtype, shape=(-1, n_classes)),
    )


def regressor_outputs(dtype: str = "float64") -> tuple[FieldSpec, ...]:
    return (FieldSpec(name="predict", dtype=dtype, shape=(-1,)),)
