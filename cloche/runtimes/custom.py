"""Custom runtime: a folder whose ``model.py`` loads and runs any model in plain Python.

``model.py`` defines ``load(path) -> obj`` where ``obj`` has ``predict(X)`` (and optionally
``predict_proba(X)`` and ``signature()``), or defines ``predict(X)`` itself at module level.
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from cloche.errors import ArtifactNotFound, CorruptArtifact
from cloche.runtimes import _common
from cloche.signatures import Signature

ENTRY = "model.py"
CONTRACT = "define load(path) returning an object with predict(X), or a module-level predict(X)"


class CustomModel:
    framework = "custom"

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.obj.predict(X))

    def signature(self) -> Signature:
        provided = getattr(self.obj, "signature", None)
        if not callable(provided):
            return Signature(source=("model",))
        try:
            sig = provided()
            sig = sig if isinstance(sig, Signature) else Signature.from_dict(sig)
        except Exception as exc:
            raise CorruptArtifact(f"{ENTRY}: signature() failed: {exc!r}") from exc
        return replace(sig, source=("model",))


class CustomClassifier(CustomModel):
    def predict_proba(self, X: Any) -> np.ndarray:
        return np.asarray(self.obj.predict_proba(X))


def _run_user_code(folder: Path) -> Any:
    """Import model.py under a private name and call its load(); the object that predicts."""
    name = f"_cloche_custom_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, folder / ENTRY)
    if spec is None or spec.loader is None:
        raise CorruptArtifact(f"{ENTRY} in {folder.name} cannot be imported", hint=CONTRACT)
    module = importlib.util.module_from_spec(spec)
    # Registered so that dataclasses and pickle can find the module's classes by name.
    sys.modules[name] = module
    entry, before = str(folder), set(sys.modules)
    # The user's own sibling modules must be importable while model.py runs.
    sys.path.insert(0, entry)
    try:
        spec.loader.exec_module(module)
        loader = getattr(module, "load", None)
        return loader(folder) if callable(loader) else module
    except ModuleNotFoundError as exc:
        sys.modules.pop(name, None)
        raise _common.missing_module(ENTRY, exc) from exc
    except Exception as exc:
        sys.modules.pop(name, None)
        raise CorruptArtifact(f"{ENTRY} failed to load: {exc!r}", hint=CONTRACT) from exc
    finally:
        if entry in sys.path and not _imports_from(folder, set(sys.modules) - before):
            sys.path.remove(entry)


def _imports_from(folder: Path, names: set[str]) -> bool:
    """Whether any of these newly imported modules lives in the user's folder."""
    for mod_name in names:
        mod: ModuleType | None = sys.modules.get(mod_name)
        file = getattr(mod, "__file__", None)
        if file and Path(file).resolve().is_relative_to(folder):
            return True
    return False


class CustomRuntime:
    name = "custom"
    extra = ""

    def load(self, artifact_dir: Path) -> CustomModel:
        folder = (artifact_dir.parent if artifact_dir.is_file() else artifact_dir).resolve()
        if not (folder / ENTRY).is_file():
            raise ArtifactNotFound(
                f"no {ENTRY} in {folder.name}", hint=f"a custom model's folder must hold {ENTRY}"
            )
        obj = _run_user_code(folder)
        if not callable(getattr(obj, "predict", None)):
            raise CorruptArtifact(f"{ENTRY} in {folder.name} gives no predict(X)", hint=CONTRACT)
        if callable(getattr(obj, "predict_proba", None)):
            return CustomClassifier(obj)
        return CustomModel(obj)
