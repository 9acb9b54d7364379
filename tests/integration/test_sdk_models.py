"""The model SDK, run alike through the in-process and the HTTP transport (`client` fixture)."""

from __future__ import annotations

import stat
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

import cloche
from cloche.config import Settings
from cloche.errors import (
    AliasNotFound,
    CorruptArtifact,
    HashMismatch,
    InvalidName,
    ModelNotFound,
    NotAModel,
    UnknownFramework,
    VersionNotFound,
)

FEATURES = ["tenure", "spend", "visits", "age"]
CUSTOM_MODEL = """
import json
from pathlib import Path


class Threshold:
    def __init__(self, cut):
        self.cut = cut

    def predict(self, X):
        return [int(row[0] > self.cut) for row in X]


def load(path):
    return Threshold(json.loads((Path(path) / "params" / "cut.json").read_text())["cut"])
"""


@pytest.fixture
def frame(iris_like: tuple[np.ndarray, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame(iris_like[0], columns=FEATURES)


def test_upload_numbers_versions_and_records_the_signature(
    client: cloche.Client, sklearn_model_file: Path
) -> None:
    first = client.models.upload(sklearn_model_file, name="churn", labels={"team": "growth"})
    second = client.models.upload(sklearn_model_file, name="churn", metrics={"auc": 0.9})
    assert (first.version, second.version) == (1, 2)
    assert first.framework == "sklearn" and set(first.files) == {"churn.joblib"}
    shown = client.models.show("churn")
    assert shown.version == 2 and shown.metrics == {"auc": 0.9}
    signature = shown.parsed_signature()
    assert signature.feature_names == FEATURES
    assert list(signature.classes or []) == [0, 1, 2]
    detail = client.models.get("churn")
    assert [v.version for v in detail.versions] == [1, 2] and detail.latest_version == 2


def test_upload_reports_progress(client: cloche.Client, sklearn_model_file: Path) -> None:
    calls: list[tuple[int, int]] = []
    client.models.upload(
        sklearn_model_file, name="churn", progress=lambda d, t: calls.append((d, t))
    )
    size = sklearn_model_file.stat().st_size
    assert calls and calls[-1] == (size, size)


def test_aliases_move_resolve_and_are_audited(
    client: cloche.Client, sklearn_model_file: Path
) -> None:
    client.models.upload(sklearn_model_file, name="churn", aliases=["prod"])
    client.models.upload(sklearn_model_file, name="churn")
    assert client.models.show("churn@prod").version == 1
    moved = client.models.alias("churn:2", "prod")
    assert moved.version == 2 and moved.aliases == ["prod"]
    assert [client.models.show(r).version for r in ("churn", "churn:2", "churn@prod")] == [2, 2, 2]
    moves = [e for e in client.audit.list(resource="churn@prod") if e.action == "alias.move"]
    assert [(e.before, e.after) for e in moves] == [
        ({"version": 1}, {"version": 2}),
        (None, {"version": 1}),
    ]
    client.models.remove_alias("churn", "prod")
    with pytest.raises(AliasNotFound):
        client.models.show("churn@prod")


def test_list_filters_by_label_and_search(client: cloche.Client, sklearn_model_file: Path) -> None:
    client.models.upload(sklearn_model_file, name="churn", labels={"team": "growth"})
    client.models.upload(
        sklearn_model_file, name="fraud", labels={"team": "risk"}, description="card fraud"
    )
    assert [m.name for m in client.models.list()] == ["churn", "fraud"]
    assert [m.name for m in client.models.list(labels={"team": "risk"})] == ["fraud"]
    assert [m.name for m in client.models.list(search="CARD")] == ["fraud"]
    assert client.models.list(labels={"team": "risk"}, search="churn") == []


def test_sample_at_upload_and_baseline_attached_later(
    client: cloche.Client, sklearn_model_file: Path, sample_parquet: Path
) -> None:
    uploaded = client.models.upload(sklearn_model_file, name="churn", sample=sample_parquet)
    assert "sample" in uploaded.signature["source"] and uploaded.baseline is None
    meta = client.models.attach_baseline("churn:1", sample_parquet)
    assert meta["rows"] == 200 and meta["columns"] == FEATURES and "key" not in meta
    baseline = client.models.show("churn:1").baseline
    assert baseline is not None and baseline["file"] == "train.parquet"


def test_delete_a_version_then_the_model(client: cloche.Client, sklearn_model_file: Path) -> None:
    client.models.upload(sklearn_model_file, name="churn")
    client.models.upload(sklearn_model_file, name="churn")
    result = client.models.delete("churn:1")
    assert result.deleted_versions == [1] and not result.model_deleted
    with pytest.raises(VersionNotFound):
        client.models.show("churn:1")
    assert client.models.delete("churn").model_deleted
    with pytest.raises(ModelNotFound):
        client.models.get("churn")


def test_load_predicts_like_the_original(
    client: cloche.Client, sklearn_model_file: Path, frame: pd.DataFrame
) -> None:
    client.models.upload(sklearn_model_file, name="churn")
    loaded = client.models.load("churn@latest")
    expected = joblib.load(sklearn_model_file).predict(frame)
    np.testing.assert_array_equal(loaded.predict(frame), expected)


def test_folder_upload_of_a_custom_model_keeps_its_layout(
    client: cloche.Client, tmp_path: Path
) -> None:
    folder = tmp_path / "rules"
    (folder / "params").mkdir(parents=True)
    (folder / "model.py").write_text(CUSTOM_MODEL)
    (folder / "params" / "cut.json").write_text('{"cut": 0.5}')
    version = client.models.upload(folder, name="rules")
    assert version.framework == "custom"
    assert set(version.files) == {"model.py", "params/cut.json"}
    assert list(client.models.load("rules").predict([[0.2], [0.9]])) == [0, 1]


def test_a_folder_with_one_file_stays_a_folder(client: cloche.Client, tmp_path: Path) -> None:
    folder = tmp_path / "solo"
    folder.mkdir()
    (folder / "model.py").write_text("def predict(X):\n    return [0 for _ in X]\n")
    assert set(client.models.upload(folder, name="solo").files) == {"model.py"}
    assert list(client.models.load("solo").predict([[1], [2]])) == [0, 0]


def test_missing_model_version_and_alias_target(
    client: cloche.Client, sklearn_model_file: Path
) -> None:
    with pytest.raises(ModelNotFound):
        client.models.show("nope")
    with pytest.raises(ModelNotFound):
        client.models.get("nope")
    client.models.upload(sklearn_model_file, name="churn")
    with pytest.raises(VersionNotFound):
        client.models.show("churn:9")
    with pytest.raises(VersionNotFound):
        client.models.alias("churn:9", "prod")


def test_invalid_names_are_refused(client: cloche.Client, sklearn_model_file: Path) -> None:
    with pytest.raises(InvalidName):
        client.models.upload(sklearn_model_file, name="bad name!")
    with pytest.raises(InvalidName):
        client.models.show("bad/name")
    assert client.models.list() == []


def test_unknown_framework_value(client: cloche.Client, sklearn_model_file: Path) -> None:
    with pytest.raises(UnknownFramework):
        client.models.upload(sklearn_model_file, name="churn", framework="caffe")


def test_a_csv_is_not_a_model(client: cloche.Client, tmp_path: Path) -> None:
    csv = tmp_path / "data.csv"
    csv.write_text("a,b\n1,2\n")
    with pytest.raises((UnknownFramework, NotAModel)):
        client.models.upload(csv, name="data")


def test_a_truncated_joblib_is_corrupt(
    client: cloche.Client, sklearn_model_file: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.joblib"
    broken.write_bytes(sklearn_model_file.read_bytes()[:200])
    with pytest.raises(CorruptArtifact):
        client.models.upload(broken, name="broken")
    assert client.models.list() == []


def test_a_tampered_artifact_is_refused_naming_the_file(
    client: cloche.Client, sklearn_model_file: Path, settings: Settings
) -> None:
    client.models.upload(sklearn_model_file, name="churn")
    [stored] = (settings.home / "artifacts" / "models" / "churn").glob("*/churn.joblib")
    stored.chmod(stat.S_IRUSR | stat.S_IWUSR)
    stored.write_bytes(stored.read_bytes()[:-1] + b"\0")
    with pytest.raises(HashMismatch, match=r"churn\.joblib") as caught:
        client.models.load("churn")
    assert caught.value.details["file"] == "churn.joblib"
