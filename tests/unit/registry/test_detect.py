from __future__ import annotations

import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import joblib
import lightgbm as lgb
import numpy as np
import pytest
import torch
import xgboost as xgb
from skl2onnx import to_onnx
from sklearn.linear_model import LinearRegression

from cloche.errors import ArtifactNotFound, CorruptArtifact, NotAModel, UnknownFramework
from cloche.registry.detect import detect_framework

FRAMEWORK_MODULES = ("sklearn", "xgboost", "lightgbm", "onnx", "onnxruntime", "torch", "joblib")


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(200, 4)).astype(np.float32)
    return X, X @ np.array([1.0, -2.0, 0.5, 0.0], dtype=np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, data) -> dict[str, Path]:
    """One saved model per format, trained once for the module."""
    X, y = data
    out = tmp_path_factory.mktemp("models")
    linear = LinearRegression().fit(X, y)
    joblib.dump(linear, out / "model.joblib")
    joblib.dump(linear, out / "compressed.joblib", compress=3)
    with (out / "model.pkl").open("wb") as fh:
        pickle.dump(linear, fh)
    booster = xgb.XGBRegressor(n_estimators=3, max_depth=2).fit(X, y)
    booster.save_model(out / "model.json")
    booster.save_model(out / "model.ubj")
    lgb.LGBMRegressor(n_estimators=3, verbose=-1).fit(X, y).booster_.save_model(out / "model.txt")
    (out / "model.onnx").write_bytes(to_onnx(linear, X[:1]).SerializeToString())
    torch.jit.script(torch.nn.Linear(4, 1)).save(str(out / "model.pt"))
    torch.save(torch.nn.Linear(4, 1).state_dict(), out / "checkpoint.pt")
    return {p.name: p for p in out.iterdir()}


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


@pytest.mark.parametrize(
    ("name", "framework"),
    [
        ("model.joblib", "sklearn"),
        ("compressed.joblib", "sklearn"),
        ("model.pkl", "sklearn"),
        ("model.json", "xgboost"),
        ("model.ubj", "xgboost"),
        ("model.txt", "lightgbm"),
        ("model.onnx", "onnx"),
        ("model.pt", "torch"),
    ],
)
def test_each_framework_is_detected_from_its_file(models, name, framework):
    assert detect_framework(models[name]) == framework


@pytest.mark.parametrize(
    ("name", "renamed", "framework"),
    [
        ("model.txt", "churn.lgb", "lightgbm"),
        ("model.txt", "churn.model", "lightgbm"),
        ("model.txt", "churn.bst", "lightgbm"),
        ("model.txt", "churn", "lightgbm"),
        ("model.onnx", "churn.bin", "onnx"),
        ("model.json", "churn.model", "xgboost"),
        ("model.ubj", "churn.bin", "xgboost"),
        ("model.pt", "churn.pth", "torch"),
        ("model.pt", "churn.zip", "torch"),
    ],
)
def test_content_decides_not_the_suffix(models, tmp_path, name, renamed, framework):
    assert detect_framework(_copy(models[name], tmp_path / renamed)) == framework


def test_xgboost_json_with_learner_not_first_is_still_detected(tmp_path):
    path = tmp_path / "rewritten.json"
    path.write_text('{"version": [3, 2, 0], "learner": {"attributes": {}}}')

    assert detect_framework(path) == "xgboost"


def test_torch_save_checkpoint_is_left_to_the_torch_runtime_to_explain(models):
    # Its load error says to export with TorchScript, which beats "unknown framework".
    assert detect_framework(models["checkpoint.pt"]) == "torch"


def test_folder_with_model_py_is_custom(tmp_path):
    (tmp_path / "model.py").write_text("def predict(X):\n    return X\n")
    (tmp_path / "weights.joblib").write_bytes(b"\x80\x04N.")

    assert detect_framework(tmp_path) == "custom"


def test_folder_with_one_model_file_among_others_is_that_files_framework(models, tmp_path):
    _copy(models["model.onnx"], tmp_path / "nested" / "churn.onnx")
    (tmp_path / "README.md").write_text("# churn model\n")
    (tmp_path / "train.csv").write_text("a,b\n1,2\n")
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")

    assert detect_framework(tmp_path) == "onnx"


def test_folder_with_two_model_files_is_ambiguous(models, tmp_path):
    _copy(models["model.onnx"], tmp_path / "a.onnx")
    _copy(models["model.joblib"], tmp_path / "b.joblib")

    with pytest.raises(UnknownFramework, match=r"several model files: a\.onnx \(onnx\)"):
        detect_framework(tmp_path)


def test_folder_without_a_model_names_the_fix(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing to see\n")

    with pytest.raises(UnknownFramework, match="no model file") as info:
        detect_framework(tmp_path)
    assert "pass --framework with one of: sklearn" in (info.value.hint or "")


def test_empty_file_is_not_a_model(tmp_path):
    (tmp_path / "model.joblib").write_bytes(b"")

    with pytest.raises(NotAModel, match=r"model\.joblib is empty"):
        detect_framework(tmp_path / "model.joblib")


def test_csv_is_not_a_model(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("tenure,spend\n1,2.5\n3,4.5\n")

    with pytest.raises(NotAModel, match=r"train\.csv is a text file, not a saved model"):
        detect_framework(path)


def test_json_that_is_not_xgboost_is_not_a_model(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"learning_rate": 0.1}')

    with pytest.raises(NotAModel, match=r"config\.json is not an XGBoost model"):
        detect_framework(path)


def test_unrecognised_bytes_ask_for_framework(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(bytes(range(256)) * 4)

    with pytest.raises(UnknownFramework, match=r"weights\.bin") as info:
        detect_framework(path)
    hint = "pass --framework with one of: sklearn, xgboost, lightgbm, onnx, torch, custom"
    assert info.value.hint == hint


def test_truncated_onnx_is_corrupt(models, tmp_path):
    data = models["model.onnx"].read_bytes()
    path = tmp_path / "model.onnx"
    path.write_bytes(data[: len(data) - 10])

    with pytest.raises(
        CorruptArtifact, match=r"model\.onnx is not a valid ONNX model: .*truncated"
    ):
        detect_framework(path)


def test_text_named_pickle_is_not_a_model(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_text("this is not a pickle\n")

    with pytest.raises(NotAModel, match=r"model\.pkl is not a joblib or pickle file"):
        detect_framework(path)


def test_pt_file_that_is_not_an_archive_is_not_torchscript(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"\x80\x02}q\x00.")

    with pytest.raises(NotAModel, match=r"model\.pt is not a TorchScript model"):
        detect_framework(path)


def test_zip_without_a_torch_layout_is_unknown(tmp_path):
    path = tmp_path / "bundle.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/model.onnx", b"\x08\x07")

    with pytest.raises(UnknownFramework, match=r"bundle\.zip is a zip archive but not"):
        detect_framework(path)


def test_missing_path_is_reported(tmp_path):
    with pytest.raises(ArtifactNotFound, match="does not exist"):
        detect_framework(tmp_path / "nope.joblib")


def test_detection_never_unpickles(tmp_path):
    # Unpickling this would import a module that does not exist and fail.
    path = tmp_path / "model.pkl"
    path.write_bytes(b"\x80\x02cno_such_module_for_cloche\nThing\n)\x81.")

    assert detect_framework(path) == "sklearn"


def test_detection_imports_no_framework(models):
    paths = [str(models[n]) for n in ("model.json", "model.onnx", "model.pt", "model.joblib")]
    code = (
        "import sys\nfrom pathlib import Path\n"
        "from cloche.registry.detect import detect_framework\n"
        f"print([detect_framework(Path(p)) for p in {paths!r}])\n"
        f"print(sorted(m for m in {FRAMEWORK_MODULES!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["['xgboost', 'onnx', 'torch', 'sklearn']", "[]"]
