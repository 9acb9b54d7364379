"""(slow) `cloche export` bundles installed into fresh environments: by their README from the
index, with every wheel as served, and offline without pip."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import cloche
from cloche.export.manifest import file_entry
from tests.integration._export_cases import Case, cases, data, sdk, upload_case

__all__ = ["cases", "data", "sdk"]  # fixtures, imported for pytest


@pytest.mark.slow
def test_a_bundle_without_wheels_installs_by_its_readme_from_the_index(
    cases: dict[str, Case], sdk: cloche.Client, tmp_path: Path
) -> None:
    found = cases["logistic_regression"]
    ref = upload_case(sdk, "churn", found)
    out = tmp_path / "edge"
    install = sdk.models.export(ref, out).commands[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    done = subprocess.run(install, shell=True, cwd=out, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    probe = (
        "import json, numpy as np; from pathlib import Path; "
        "from cloche.runtimes import get_runtime; "
        "m = get_runtime('onnx').load(Path('model')); "
        f"print(json.dumps(m.predict(np.array({found.rows[:3].tolist()!r})).tolist()))"
    )
    ran = subprocess.run(
        [".venv/bin/python", "-c", probe], cwd=out, env=env, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == sdk.models.load(ref).predict(found.rows[:3]).tolist()


@pytest.mark.slow
def test_no_slim_keeps_every_wheel_as_the_index_served_it(
    cases: dict[str, Case], sdk: cloche.Client, tmp_path: Path
) -> None:
    ref = upload_case(sdk, "churn", cases["logistic_regression"])
    result = sdk.models.export(ref, tmp_path / "edge", with_wheels=True, slim=False)
    assert "slimmed" not in result.manifest
    assert not [p for p in result.manifest["requirements"]["packages"] if "+slim" in p]
    wheel = next((tmp_path / "edge" / "wheels").glob("onnxruntime-*.whl"))
    readme = (tmp_path / "edge" / "README.md").read_text()
    assert "+slim" not in wheel.name and "--no-slim" not in readme


@pytest.mark.slow
def test_a_bundle_with_wheels_installs_offline_without_pip_and_predicts(
    cases: dict[str, Case], sdk: cloche.Client, tmp_path: Path
) -> None:
    """pip download from PyPI (cached after the first run), then an install with no index."""
    found = cases["logistic_regression"]
    ref = upload_case(sdk, "churn", found)
    out = tmp_path / "edge"
    result = sdk.models.export(ref, out, with_wheels=True)

    lines = [
        line
        for line in (out / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    wheels = {p.name: p for p in (out / "wheels").glob("*.whl")}
    assert len(wheels) == len(lines) + 1  # and pip's own wheel
    for line in lines:
        pin, _, digest = line.partition(" --hash=sha256:")
        assert digest in {file_entry(p)["sha256"] for p in wheels.values()}, pin
    assert {f"wheels/{name}" for name in wheels} <= set(result.files)
    pip_wheel = next(name for name in wheels if name.startswith("pip-"))
    assert f"/bundle/wheels/{pip_wheel}/pip install" in (out / "Dockerfile").read_text()
    assert result.manifest["requirements"]["platform"] in ("manylinux_x86_64", "manylinux_aarch64")
    # onnxruntime's wheel is the slim one: its C API library left out, its version marked.
    slimmed = result.manifest["slimmed"]["onnxruntime"]
    assert any(re.fullmatch(r"onnxruntime==[0-9.]+\+slim --hash=sha256:\w+", x) for x in lines)
    assert [p.split("/")[-1].split(".so")[0] for p in slimmed["removed"]] == ["libonnxruntime"]
    readme = (out / "README.md").read_text()
    assert slimmed["from_sha256"][:16] in readme and "--no-slim" in readme

    # A fresh environment with no pip: pip runs from its wheel, as in the Dockerfile.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    install = [
        python, str(out / "wheels" / pip_wheel / "pip"), "install", "--no-index", "--no-deps",
        "--find-links", str(out / "wheels"), "--disable-pip-version-check", "-q",
        "-r", str(out / "requirements.txt"),
    ]  # fmt: skip
    done = subprocess.run(install, env=env, capture_output=True, text=True, cwd=out)
    assert done.returncode == 0, done.stderr
    probe = f"""
import importlib.util, json, numpy as np
from pathlib import Path
from cloche.runtimes import get_runtime
model = get_runtime("onnx").load(Path({str(out / "model")!r}))
rows = np.array({found.rows[:5].tolist()!r})
print(json.dumps({{"labels": model.predict(rows).tolist(), "classes": list(model.classes),
                  "found": [m for m in ("sklearn", "onnx", "scipy", "pandas", "pydantic")
                            if importlib.util.find_spec(m) is not None]}}))
"""
    ran = subprocess.run([python, "-c", probe], env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    answer = json.loads(ran.stdout)
    assert answer["found"] == []  # the lean runtime: no framework, no onnx, no control plane
    assert not list(venv.glob("lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so*"))
    assert answer["classes"] == [0, 1, 2]  # from the metadata the exporter wrote
    assert answer["labels"] == sdk.models.load(ref).predict(found.rows[:5]).tolist()
