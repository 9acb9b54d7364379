"""`cloche export` as a real subprocess: what it prints and its exit codes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import cloche
from cloche.config import Settings
from tests.e2e._servers import cloche_command, server_env

CUSTOM_MODEL = "def predict(X):\n    return [0 for _ in X]\n"


@pytest.fixture
def home(tmp_path: Path, sklearn_model_file: Path, sample_parquet: Path) -> Path:
    """A store holding churn:1 (scikit-learn, with a baseline) and sign:1 (a custom model)."""
    folder = tmp_path / "sign"
    folder.mkdir()
    (folder / "model.py").write_text(CUSTOM_MODEL)
    home = tmp_path / "store"
    with cloche.Client(settings=Settings(home=home)) as sdk:
        sdk.models.upload(sklearn_model_file, name="churn", baseline=sample_parquet)
        sdk.models.upload(folder, name="sign", framework="custom")
    return home


def run(home: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cloche_command("export", *map(str, args)),
        env=server_env(home, {"COLUMNS": "200"}),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_export_prints_the_files_parity_and_the_commands_to_serve(
    home: Path, tmp_path: Path
) -> None:
    done = run(home, "churn:1", "--out", tmp_path / "edge")

    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"exported churn:1 to {tmp_path / 'edge'}: a bundle, onnx runtime" in out
    for name in ("model/model.onnx", "requirements.txt", "Dockerfile", "README.md"):
        assert name in out
    assert "parity on 200 baseline rows: passed" in out
    assert "probabilities: max abs diff" in out and "predict: mismatched rows 0" in out
    assert "python3 -m venv .venv && .venv/bin/pip install --find-links wheels --no-deps" in out
    assert ".venv/bin/cloche serve ." in out
    manifest = json.loads((tmp_path / "edge" / "manifest.json").read_text())
    assert manifest["parity"]["passed"] is True and manifest["runtime"] == "onnx"


def test_a_refused_conversion_exits_2_with_the_hint_and_writes_nothing(
    home: Path, tmp_path: Path
) -> None:
    done = run(home, "sign", "--out", tmp_path / "edge", "--format", "bundle")

    assert done.returncode == 2, done.stdout + done.stderr
    assert "error: sign:1 is a custom model" in done.stderr
    assert "hint: pass --native to bundle the model in its own framework" in done.stderr
    assert done.stdout == ""
    assert not (tmp_path / "edge").exists()
