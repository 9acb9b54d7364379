"""A custom model's imports, read from its files' syntax without running them."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloche.errors import CorruptArtifact
from cloche.export.imports import imported_modules, split_installed

MODEL = """
import json, os.path
import scipy.special as special
from sklearn.base import BaseEstimator
from . import sibling
from helpers import scale
from cloche.runtimes import get_runtime

def load(path):
    import joblib  # lazy: only when loading
    try:
        import surely_not_installed_xyz
    except ImportError:
        surely_not_installed_xyz = None
    return joblib.load(path / "m.joblib")
"""


def test_every_third_party_import_is_found_at_any_depth_and_the_rest_left_out(
    tmp_path: Path,
) -> None:
    (tmp_path / "model.py").write_text(MODEL)
    (tmp_path / "helpers.py").write_text("import numpy as np\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("from pkg import inner\nimport pandas\n")
    assert imported_modules(tmp_path) == [
        "joblib", "numpy", "pandas", "scipy", "sklearn", "surely_not_installed_xyz",
    ]  # fmt: skip


def test_modules_split_into_installed_here_and_not(tmp_path: Path) -> None:
    installed, missing = split_installed(["numpy", "surely_not_installed_xyz"])
    assert installed == ("numpy",) and missing == ("surely_not_installed_xyz",)


def test_a_file_that_is_not_python_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "model.py").write_text("def load(path):\n    return\n")
    (tmp_path / "util.py").write_text("def broken(:\n")
    with pytest.raises(CorruptArtifact) as refused:
        imported_modules(tmp_path)
    assert "util.py" in refused.value.message and "line 1" in refused.value.message
