"""Framework runtimes, looked up by name and imported only when first used.

Importing this package imports no framework: each adapter imports its own on ``load``.
"""

from __future__ import annotations

import importlib

from cloche.errors import UnknownFramework
from cloche.runtimes.base import LoadedModel, Runtime, has_predict_proba

__all__ = [
    "RUNTIMES",
    "LoadedModel",
    "Runtime",
    "get_runtime",
    "has_predict_proba",
    "runtime_names",
]

RUNTIMES: dict[str, str] = {
    "sklearn": "cloche.runtimes.sklearn:SklearnRuntime",
    "xgboost": "cloche.runtimes.xgboost:XGBoostRuntime",
    "lightgbm": "cloche.runtimes.lightgbm:LightGBMRuntime",
    "onnx": "cloche.runtimes.onnx:OnnxRuntime",
    "torch": "cloche.runtimes.torch:TorchRuntime",
    "custom": "cloche.runtimes.custom:CustomRuntime",
}

# Names users reach for that mean one of the runtimes above.
ALIASES = {"scikit-learn": "sklearn", "pytorch": "torch", "torchscript": "torch"}


def runtime_names() -> list[str]:
    """The names of the built-in runtimes, as accepted by ``--framework``."""
    return list(RUNTIMES)


_instances: dict[str, Runtime] = {}


def get_runtime(name: str) -> Runtime:
    """The runtime called ``name``; UnknownFramework for a name that is not one."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key in _instances:
        return _instances[key]
    target = RUNTIMES.get(key)
    if target is None:
        known = ", ".join(runtime_names())
        raise UnknownFramework(
            f"unknown framework {name!r}; known frameworks: {known}",
            hint=f"pass --framework with one of: {known}",
        )
    module_name, class_name = target.split(":")
    runtime: Runtime = getattr(importlib.import_module(module_name), class_name)()
    _instances[key] = runtime
    return runtime
