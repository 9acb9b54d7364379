"""The inspector seam: the child process answers like the in-process inspector, keeps no
secrets in its environment, and turns crashes and hangs into cloche errors."""

from __future__ import annotations

import time
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from cloche.errors import CorruptArtifact, InspectionTimeout, MissingDependency
from cloche.registry.child_pool import child_env
from cloche.registry.inspection import ChildInspector, InspectRequest, inspect_here


@pytest.fixture
def joblib_model(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 3))
    path = tmp_path / "m.joblib"
    joblib.dump(LogisticRegression().fit(X, (X[:, 0] > 0).astype(int)), path)
    return path


def _custom(tmp_path: Path, body: str) -> Path:
    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "model.py").write_text(body)
    return folder


def test_child_env_drops_cloche_settings_and_secret_named_variables() -> None:
    env = {
        "PATH": "/usr/bin",
        "HOME": "/home/u",
        "LANG": "C.UTF-8",
        "CLOCHE_DB_URL": "postgresql://u:pw@db/x",
        "CLOCHE_HOME": "/srv/cloche",
        "smtp_password": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "API_KEY": "x",
        "GH_TOKEN": "x",
        "GOOGLE_APPLICATION_CREDENTIALS": "/k.json",
        "TEAMS_HOOK": "https://hooks.example/x",
        "DATABASE_URL": "postgresql://u:pw@db/x",
        "SENTRY_DSN": "https://k@sentry.example/1",
    }
    assert child_env(env) == {"PATH": "/usr/bin", "HOME": "/home/u", "LANG": "C.UTF-8"}


def test_the_child_answers_what_inspecting_in_process_answers(joblib_model: Path) -> None:
    request = InspectRequest(framework="sklearn", model_path=joblib_model)
    assert ChildInspector(timeout_s=120)(request) == inspect_here(request)


def test_a_cloche_error_in_the_child_is_raised_as_the_same_class(tmp_path: Path) -> None:
    folder = _custom(tmp_path, "import not_installed_anywhere\n")
    request = InspectRequest(framework="custom", model_path=folder)
    with pytest.raises(MissingDependency) as here:
        inspect_here(request)
    with pytest.raises(MissingDependency) as child:
        ChildInspector(timeout_s=60)(request)
    assert (child.value.message, child.value.hint) == (here.value.message, here.value.hint)


def test_a_model_that_kills_its_process_is_a_corrupt_artifact(tmp_path: Path) -> None:
    folder = _custom(tmp_path, "import os, sys\nprint('dying', file=sys.stderr)\nos._exit(3)\n")
    with pytest.raises(CorruptArtifact, match=r"exit code 3\): dying"):
        ChildInspector(timeout_s=60)(InspectRequest(framework="custom", model_path=folder))


def test_a_model_that_hangs_times_out_and_is_killed(tmp_path: Path) -> None:
    folder = _custom(tmp_path, "import time\ntime.sleep(600)\n")
    started = time.monotonic()
    with pytest.raises(InspectionTimeout) as info:
        ChildInspector(timeout_s=2)(InspectRequest(framework="custom", model_path=folder))
    assert time.monotonic() - started < 30
    assert "CLOCHE_REGISTRY__INSPECT_TIMEOUT_S" in (info.value.hint or "")


def test_files_of_the_upload_never_shadow_modules_the_child_imports(
    tmp_path: Path, joblib_model: Path
) -> None:
    # A data-format upload's folder is not on the child's sys.path, nor its working directory.
    (joblib_model.parent / "json.py").write_text("raise SystemExit('shadowed')\n")
    request = InspectRequest(framework="sklearn", model_path=joblib_model)
    assert ChildInspector(timeout_s=120)(request).task == "classification"
