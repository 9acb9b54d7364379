"""Which uploads run code when they are loaded, and who may upload them.

Loading a pickle or joblib file unpickles it, and unpickling can call any function; a TorchScript
archive holds code the interpreter runs; a custom model is a ``model.py`` that the server
imports. Whoever uploads one of these runs code on the server, so it takes the publisher (or
admin) role. ONNX graphs, XGBoost JSON/UBJSON and LightGBM text models are parsed as data and
only need the right to write to the registry.

The list is of runtimes known to load *without* running code: a runtime added later counts as
running code until it is listed here.
"""

from __future__ import annotations

from pathlib import Path

from cloche.auth.roles import Permission, Principal, allows, authorize
from cloche.errors import CodeUploadForbidden
from cloche.runtimes import get_runtime

LOADS_WITHOUT_CODE = frozenset({"onnx", "xgboost", "lightgbm"})
PUBLISH_HINT = "use a token with the publisher (or admin) role"
_PICKLE_NAMES = {".joblib": "joblib", ".pkl": "pickle", ".pickle": "pickle"}
_LABELS = {"sklearn": "pickle or joblib", "torch": "TorchScript", "custom": "custom Python"}


def loading_runs_code(framework: str) -> bool:
    """Whether loading a model of this framework (a runtime name or alias) runs its code."""
    return get_runtime(framework).name not in LOADS_WITHOUT_CODE


def format_label(framework: str, source: Path) -> str:
    """How a user names the upload's format: 'joblib', 'pickle', 'TorchScript', ..."""
    name = get_runtime(framework).name
    if name == "sklearn" and source.suffix.lower() in _PICKLE_NAMES:
        return _PICKLE_NAMES[source.suffix.lower()]
    return _LABELS.get(name, name)


def authorize_upload(principal: Principal, *, framework: str, source: Path) -> None:
    """Raise Forbidden unless ``principal`` may upload this model; call it before the upload is
    stored, inspected or loaded."""
    authorize(principal, Permission.WRITE)
    if loading_runs_code(framework) and not allows(principal, Permission.PUBLISH):
        raise CodeUploadForbidden(
            f"uploading a {format_label(framework, source)} model runs its code when loaded; "
            f"role {principal.role!r} may not",
            hint=PUBLISH_HINT,
        )
