"""Who may upload which model format over REST, and where the server loads an upload: in a child
process whose environment holds none of the server's secrets."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import cloche
from cloche.auth import tokens
from cloche.auth.roles import ROLES
from cloche.config import Settings
from cloche.store.store import Store
from tests.integration.conftest import LiveServer, run_server

FEATURES = ["tenure", "spend", "visits", "age"]
# format -> whether loading it runs code
FORMATS = {
    "joblib": True,
    "pickle": True,
    "torchscript": True,
    "custom": True,
    "onnx": False,
    "xgboost-json": False,
    "xgboost-ubj": False,
    "lightgbm": False,
}
MAY_UPLOAD_CODE = {"admin", "publisher"}
MAY_UPLOAD = {"admin", "publisher", "deployer"}
CUSTOM_MODEL = """
import numpy as np

class Model:
    def predict(self, X):
        return np.zeros(len(X))

def load(path):
    return Model()
"""
ENV_PROBE = """
import json, os
import numpy as np

class Model:
    def predict(self, X):
        return np.zeros(len(X))

def load(path):
    with open({out!r}, "w") as fh:
        json.dump({{"pid": os.getpid(), "env": dict(os.environ)}}, fh)
    print("model code printing to stdout must not spoil the answer")
    return Model()
"""


def _training_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(120, 4)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(np.int64)


def _save(fmt: str, folder: Path) -> Path:
    """Save a small model in ``fmt`` under ``folder``; the path to upload."""
    X, y = _training_data()
    folder.mkdir(parents=True)
    if fmt in ("joblib", "pickle"):
        import joblib
        from sklearn.linear_model import LogisticRegression

        path = folder / ("model.joblib" if fmt == "joblib" else "model.pkl")
        joblib.dump(LogisticRegression().fit(X, y), path)
        return path
    if fmt == "torchscript":
        import torch

        path = folder / "model.pt"
        torch.jit.script(torch.nn.Linear(4, 1)).save(str(path))
        return path
    if fmt == "custom":
        (folder / "model.py").write_text(CUSTOM_MODEL)
        return folder
    if fmt == "onnx":
        from skl2onnx import to_onnx
        from sklearn.linear_model import LogisticRegression

        path = folder / "model.onnx"
        path.write_bytes(to_onnx(LogisticRegression().fit(X, y), X[:1]).SerializeToString())
        return path
    if fmt.startswith("xgboost"):
        import xgboost as xgb

        path = folder / ("model.json" if fmt == "xgboost-json" else "model.ubj")
        xgb.XGBClassifier(n_estimators=3, max_depth=2).fit(X, y).save_model(path)
        return path
    import lightgbm as lgb

    path = folder / "model.txt"
    lgb.LGBMClassifier(n_estimators=3, verbose=-1).fit(X, y).booster_.save_model(path)
    return path


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("formats")
    return {fmt: _save(fmt, root / fmt) for fmt in FORMATS}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = Settings(home=tmp_path_factory.mktemp("home"))
    with run_server(settings) as live:
        yield live


@pytest.fixture(scope="module")
def role_tokens(server: LiveServer) -> dict[str, str]:
    store = Store.open(server.settings)
    try:
        return {role: tokens.create_token(store, role=role, name=role).token for role in ROLES}
    finally:
        store.close()


def upload(url: str, path: Path, *, name: str, token: str | None = None) -> httpx.Response:
    """POST a model file, or each file of a folder under its relative name."""
    paths = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    files = [
        ("files", (p.relative_to(path).as_posix() if path.is_dir() else p.name, p.read_bytes()))
        for p in paths
    ]
    data: dict[str, Any] = {"name": name, "folder": str(path.is_dir()).lower()}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{url}/api/v1/models", data=data, files=files, headers=headers, timeout=120)


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("role", ROLES)
def test_each_role_may_upload_exactly_the_formats_its_role_allows(
    server: LiveServer,
    model_files: dict[str, Path],
    role_tokens: dict[str, str],
    role: str,
    fmt: str,
) -> None:
    runs_code = FORMATS[fmt]
    allowed = role in (MAY_UPLOAD_CODE if runs_code else MAY_UPLOAD)
    response = upload(server.url, model_files[fmt], name=f"{fmt}-{role}", token=role_tokens[role])
    if allowed:
        assert response.status_code == 201, response.text
        assert response.json()["version"] == 1
        return
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    if role in MAY_UPLOAD:  # may write to the registry, but not code
        assert error["code"] == "code_upload_forbidden"
        assert "runs its code when loaded" in error["message"]
        assert f"role {role!r} may not" in error["message"]
        assert error["hint"] == "use a token with the publisher (or admin) role"
    else:
        assert error["code"] == "forbidden"


def test_a_deployer_is_told_the_joblib_format_runs_code(
    server: LiveServer, model_files: dict[str, Path], role_tokens: dict[str, str]
) -> None:
    response = upload(
        server.url, model_files["joblib"], name="churn", token=role_tokens["deployer"]
    )
    assert response.json()["error"]["message"] == (
        "uploading a joblib model runs its code when loaded; role 'deployer' may not"
    )
    listed = httpx.get(
        f"{server.url}/api/v1/models",
        headers={"Authorization": f"Bearer {role_tokens['admin']}"},
    ).json()
    assert "churn" not in [m["name"] for m in listed]  # nothing stored


def test_a_framework_named_by_the_uploader_is_checked_like_a_detected_one(
    server: LiveServer, model_files: dict[str, Path], role_tokens: dict[str, str]
) -> None:
    path = model_files["joblib"]
    response = httpx.post(
        f"{server.url}/api/v1/models",
        data={"name": "named", "framework": "scikit-learn"},
        files=[("files", (path.name, path.read_bytes()))],
        headers={"Authorization": f"Bearer {role_tokens['deployer']}"},
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "code_upload_forbidden"


SECRETS = {
    "CLOCHE_DB_URL": "postgresql://cloche:hunter2@db.internal/cloche",
    "CLOCHE_ALERTS__SMTP_PASSWORD": "smtp-secret",
    "CLOCHE_S3__SECRET_ACCESS_KEY": "s3-secret-value",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "GITHUB_TOKEN": "ghp_secret",
    "SLACK_WEBHOOK": "https://hooks.slack.example/T0/B0/secret",
    "DATABASE_URL": "postgresql://app:pw@db/app",
}


def test_the_server_loads_an_upload_in_a_process_without_its_secrets(
    server: LiveServer,
    role_tokens: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    probe = tmp_path / "probe.json"
    folder = tmp_path / "probe"
    folder.mkdir()
    (folder / "model.py").write_text(ENV_PROBE.format(out=str(probe)))
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")

    # Twice: a spare child started before the variables were set never had them; the one the
    # second upload gets was started after the first, with the secrets in this environment.
    for name in ("probe", "probe-again"):
        response = upload(server.url, folder, name=name, token=role_tokens["publisher"])
        assert response.status_code == 201, response.text
    seen = json.loads(probe.read_text())
    assert seen["pid"] != os.getpid()  # the server runs in this test's process
    assert not [name for name in seen["env"] if name in SECRETS or name.startswith("CLOCHE_")]
    assert not set(SECRETS.values()) & set(seen["env"].values())
    assert seen["env"]["OMP_NUM_THREADS"] == "1"  # the rest of the environment is kept


def test_an_error_while_loading_comes_back_as_the_same_cloche_error(
    server: LiveServer, role_tokens: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "model.py").write_text("def load(path):\n    raise ValueError('boom')\n")
    response = upload(server.url, folder, name="broken", token=role_tokens["admin"])
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "corrupt_artifact"
    assert "ValueError('boom')" in error["message"] and error["hint"]


def test_the_local_owner_uploads_code_in_process(settings: Settings, tmp_path: Path) -> None:
    probe = tmp_path / "probe.json"
    folder = tmp_path / "probe"
    folder.mkdir()
    (folder / "model.py").write_text(ENV_PROBE.format(out=str(probe)))
    with cloche.Client(settings=settings) as client:
        version = client.models.upload(folder, name="probe")
    assert version.framework == "custom" and version.created_by.startswith("local")
    assert json.loads(probe.read_text())["pid"] == os.getpid()


def test_a_deployer_attaches_a_parquet_baseline_that_is_never_unpickled(
    server: LiveServer, model_files: dict[str, Path], role_tokens: dict[str, str], tmp_path: Path
) -> None:
    import pickle

    import pyarrow as pa
    import pyarrow.parquet as pq

    marker = tmp_path / "unpickled"
    deployer = {"Authorization": f"Bearer {role_tokens['deployer']}"}
    created = upload(server.url, model_files["onnx"], name="data", token=role_tokens["deployer"])
    assert created.status_code == 201, created.text
    rng = np.random.default_rng(0)
    columns: dict[str, Any] = {f: rng.normal(size=50) for f in FEATURES}
    table = pa.table(columns)
    evil = pa.field(
        "note",
        pa.binary(),
        metadata={
            b"ARROW:extension:name": b"arrow.py_extension_type",
            b"ARROW:extension:metadata": pickle.dumps(_Touch(marker)),
        },
    )
    table = table.append_column(evil, pa.array([b"x"] * 50))
    path = tmp_path / "train.parquet"
    pq.write_table(table, path)

    response = httpx.put(
        f"{server.url}/api/v1/models/data/versions/1/baseline",
        files=[("file", (path.name, path.read_bytes()))],
        headers=deployer,
    )

    assert response.status_code == 200, response.text
    assert response.json()["rows"] == 50
    assert not marker.exists()


class _Touch:
    """Unpickling this creates a file: the proof that something was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))
