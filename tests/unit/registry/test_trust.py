"""Which formats run code when loaded, and the one check every upload surface shares."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloche.auth.roles import ROLES, Principal
from cloche.errors import CodeUploadForbidden, Forbidden, UnknownFramework
from cloche.registry.trust import authorize_upload, format_label, loading_runs_code


@pytest.mark.parametrize(
    ("framework", "runs_code"),
    [
        ("sklearn", True),
        ("scikit-learn", True),
        ("torch", True),
        ("torchscript", True),
        ("custom", True),
        ("onnx", False),
        ("xgboost", False),
        ("lightgbm", False),
    ],
)
def test_loading_runs_code_for_pickle_torch_and_custom_only(
    framework: str, runs_code: bool
) -> None:
    assert loading_runs_code(framework) is runs_code


def test_an_unknown_framework_is_refused_before_any_role_check() -> None:
    with pytest.raises(UnknownFramework):
        loading_runs_code("safetensors")


@pytest.mark.parametrize(
    ("framework", "name", "label"),
    [
        ("sklearn", "m.joblib", "joblib"),
        ("sklearn", "m.PKL", "pickle"),
        ("sklearn", "folder", "pickle or joblib"),
        ("torch", "m.pt", "TorchScript"),
        ("custom", "model.py", "custom Python"),
    ],
)
def test_format_label_names_the_format_as_users_do(framework: str, name: str, label: str) -> None:
    assert format_label(framework, Path(name)) == label


def test_a_deployer_is_refused_a_pickle_naming_the_publisher_role() -> None:
    with pytest.raises(CodeUploadForbidden) as info:
        authorize_upload(
            Principal(actor="ci", role="deployer"), framework="sklearn", source=Path("m.pkl")
        )
    assert info.value.message == (
        "uploading a pickle model runs its code when loaded; role 'deployer' may not"
    )
    assert info.value.hint == "use a token with the publisher (or admin) role"
    assert info.value.http_status == 403


@pytest.mark.parametrize("role", ROLES)
def test_only_publishers_and_admins_may_upload_code(role: str) -> None:
    principal = Principal(actor=role, role=role)
    if role in ("admin", "publisher"):
        authorize_upload(principal, framework="custom", source=Path("model.py"))
    else:
        with pytest.raises(Forbidden):
            authorize_upload(principal, framework="custom", source=Path("model.py"))


@pytest.mark.parametrize("role", ["edge", "predictor", "viewer"])
def test_roles_that_may_not_write_are_refused_even_for_data_formats(role: str) -> None:
    with pytest.raises(Forbidden) as info:
        authorize_upload(Principal(actor=role, role=role), framework="onnx", source=Path("m.onnx"))
    assert type(info.value) is Forbidden
