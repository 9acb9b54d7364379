"""cloche's own wheel, zipped from the installed package: valid RECORD, installable offline."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import cloche
from cloche.export.wheel import build_cloche_wheel

DIST_INFO = f"cloche-{cloche.__version__}.dist-info"


def test_the_wheel_holds_the_package_and_a_dist_info_whose_record_matches(tmp_path: Path) -> None:
    path = build_cloche_wheel(tmp_path)
    assert path.name == f"cloche-{cloche.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert "cloche/__init__.py" in names and "cloche/export/manifest.py" in names
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        record = zf.read(f"{DIST_INFO}/RECORD").decode().splitlines()
        listed = {}
        for line in record:
            name, digest, size = line.rsplit(",", 2)
            listed[name] = (digest, size)
        assert set(listed) == set(names)
        assert listed[f"{DIST_INFO}/RECORD"] == ("", "")
        for name in names:
            if name.endswith("RECORD"):
                continue
            data = zf.read(name)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert listed[name] == (f"sha256={expected.decode()}", str(len(data))), name
        metadata = zf.read(f"{DIST_INFO}/METADATA").decode()
        wheel = zf.read(f"{DIST_INFO}/WHEEL").decode()
        entry_points = zf.read(f"{DIST_INFO}/entry_points.txt").decode()
    assert f"Name: cloche\nVersion: {cloche.__version__}\n" in metadata
    assert "Requires-Dist" not in metadata  # the bundle pins and installs with --no-deps
    assert "Root-Is-Purelib: true" in wheel and "Tag: py3-none-any" in wheel
    assert entry_points == "[console_scripts]\ncloche = cloche.cli.launch:main\n"


def test_the_same_sources_give_the_same_bytes(tmp_path: Path) -> None:
    first = build_cloche_wheel(tmp_path / "a").read_bytes()
    second = build_cloche_wheel(tmp_path / "b").read_bytes()
    assert first == second


@pytest.mark.slow
def test_pip_installs_it_offline_and_cloche_imports_there(tmp_path: Path) -> None:
    wheel = build_cloche_wheel(tmp_path / "wheels")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    python = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    install = [python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)]
    done = subprocess.run(install, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    probe = "import cloche, cloche.export.manifest as m; print(cloche.__version__, m.__file__)"
    ran = subprocess.run(
        [python, "-c", probe], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert ran.returncode == 0, ran.stderr
    version, location = ran.stdout.split()
    assert version == cloche.__version__ and location.startswith(str(venv))
    assert (venv / "bin" / "cloche").is_file()  # the console script from entry_points.txt
