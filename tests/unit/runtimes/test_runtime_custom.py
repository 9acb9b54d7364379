from __future__ import annotations

import json
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

from cloche.errors import ArtifactNotFound, CorruptArtifact, MissingDependency
from cloche.runtimes import get_runtime, has_predict_proba
from cloche.signatures import FieldSpec

CLASS_MODEL = """
    import json
    from pathlib import Path

    import numpy as np


    class Softmax:
        def __init__(self, weights):
            self.weights = np.asarray(weights)

        def predict_proba(self, X):
            z = np.asarray(X, dtype=float) @ self.weights
            e = np.exp(z - z.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)

        def predict(self, X):
            return self.predict_proba(X).argmax(axis=1)

        def signature(self):
            return {
                "inputs": [{"name": "input", "dtype": "float64", "shape": [-1, 4]}],
                "input_kind": "tensor",
                "task": "classification",
                "classes": [0, 1, 2],
            }


    def load(path):
        return Softmax(json.loads((Path(path) / "weights.json").read_text()))
"""


def _write(folder: Path, source: str, name: str = "model.py") -> Path:
    (folder / name).write_text(textwrap.dedent(source))
    return folder


@pytest.fixture
def sys_path(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A copy of sys.path that the test may change; the real one comes back afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    return sys.path


def _softmax(X: np.ndarray, weights: np.ndarray) -> np.ndarray:
    z = X @ weights
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_load_returning_an_object_predicts_like_the_users_code(tabular, artifact_dir, sys_path):
    weights = np.random.default_rng(3).normal(size=(4, 3))
    (artifact_dir / "weights.json").write_text(json.dumps(weights.tolist()))
    model = get_runtime("custom").load(_write(artifact_dir, CLASS_MODEL))

    assert model.framework == "custom"
    expected = _softmax(tabular.X, weights)
    np.testing.assert_allclose(model.predict_proba(tabular.X), expected)
    np.testing.assert_array_equal(model.predict(tabular.X), expected.argmax(axis=1))


def test_signature_the_model_provides_is_used(artifact_dir, sys_path):
    (artifact_dir / "weights.json").write_text(json.dumps(np.eye(4, 3).tolist()))
    sig = get_runtime("custom").load(_write(artifact_dir, CLASS_MODEL)).signature()

    assert sig.inputs == (FieldSpec("input", "float64", (-1, 4)),)
    assert sig.task == "classification"
    assert sig.classes == (0, 1, 2)
    assert sig.source == ("model",)


def test_module_level_predict_needs_no_load(tabular, artifact_dir, sys_path):
    model = get_runtime("custom").load(
        _write(artifact_dir, "def predict(X):\n    return [row[0] * 2 for row in X]\n")
    )

    np.testing.assert_allclose(model.predict(tabular.X), tabular.X[:, 0] * 2)
    assert not has_predict_proba(model)
    assert model.signature().is_empty


def test_model_module_is_private_and_the_folder_leaves_sys_path(artifact_dir, sys_path):
    before = set(sys.modules)
    get_runtime("custom").load(_write(artifact_dir, "def predict(X):\n    return X\n"))

    assert "model" not in sys.modules
    assert str(artifact_dir.resolve()) not in sys_path
    new = set(sys.modules) - before
    assert all(name.startswith("_cloche_custom_") for name in new)


def test_sibling_modules_can_be_imported_and_stay_importable(tabular, artifact_dir, sys_path):
    helper = f"cloche_test_helper_{uuid.uuid4().hex[:8]}"
    (artifact_dir / f"{helper}.py").write_text("def double(X):\n    return X * 2\n")
    source = f"import {helper}\n\ndef predict(X):\n    return {helper}.double(X)\n"
    try:
        model = get_runtime("custom").load(_write(artifact_dir, source))
        np.testing.assert_allclose(model.predict(tabular.X), tabular.X * 2)
        assert str(artifact_dir.resolve()) in sys_path
    finally:
        sys.modules.pop(helper, None)


def test_two_custom_models_do_not_clash(tmp_path, sys_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    a = get_runtime("custom").load(_write(first, "def predict(X):\n    return [1]\n"))
    b = get_runtime("custom").load(_write(second, "def predict(X):\n    return [2]\n"))

    assert a.predict([[0]]).tolist() == [1]
    assert b.predict([[0]]).tolist() == [2]


def test_model_py_without_predict_is_refused(artifact_dir, sys_path):
    with pytest.raises(CorruptArtifact, match="gives no predict"):
        get_runtime("custom").load(_write(artifact_dir, "def load(path):\n    return object()\n"))


def test_model_py_that_fails_to_import_is_corrupt(artifact_dir, sys_path):
    with pytest.raises(CorruptArtifact, match=r"model\.py failed to load: SyntaxError"):
        get_runtime("custom").load(_write(artifact_dir, "def predict(X)\n    return X\n"))
    assert str(artifact_dir.resolve()) not in sys_path


def test_model_py_importing_a_missing_package_names_it(artifact_dir, sys_path):
    with pytest.raises(MissingDependency, match="no_such_package_for_cloche"):
        get_runtime("custom").load(_write(artifact_dir, "import no_such_package_for_cloche\n"))


def test_folder_without_model_py_is_not_a_custom_model(artifact_dir):
    (artifact_dir / "predict.py").write_text("def predict(X):\n    return X\n")

    with pytest.raises(ArtifactNotFound, match=r"no model\.py"):
        get_runtime("custom").load(artifact_dir)
