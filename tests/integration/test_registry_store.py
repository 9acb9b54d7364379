"""The registry's service layer against SQLite and PostgreSQL (the `any_store` fixture)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

from cloche import audit
from cloche.auth.roles import LOCAL_USER
from cloche.errors import (
    AliasNotFound,
    InvalidName,
    ModelNotFound,
    PayloadTooLarge,
    VersionNotFound,
)
from cloche.registry import service as registry
from cloche.registry import upload
from cloche.registry.inspection import inspect_here
from cloche.store.store import Store


def _upload(store: Store, path: Path, **kw: object) -> registry.ModelVersion:
    return upload.upload_model(
        store,
        principal=LOCAL_USER,
        inspector=inspect_here,
        source=path,
        name=kw.pop("name", "churn"),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def test_versions_number_themselves_per_model(any_store: Store, sklearn_model_file: Path) -> None:
    assert _upload(any_store, sklearn_model_file).version == 1
    assert _upload(any_store, sklearn_model_file).version == 2
    assert _upload(any_store, sklearn_model_file, name="other").version == 1
    names = [m.name for m in registry.list_models(any_store)]
    assert names == ["churn", "other"]


def test_upload_records_hashes_signature_labels_and_metrics(
    any_store: Store, sklearn_model_file: Path, sample_parquet: Path
) -> None:
    v = _upload(
        any_store,
        sklearn_model_file,
        baseline=sample_parquet,
        labels={"team": "growth"},
        metrics={"auc": 0.91},
        description="first try",
    )
    assert v.framework == "sklearn"
    assert len(v.sha256) == 64 and set(v.files) == {"churn.joblib"}
    sig = v.parsed_signature()
    assert sig.feature_names == ["tenure", "spend", "visits", "age"]
    assert sig.task == "classification" and list(sig.classes or []) == [0, 1, 2]
    assert v.labels == {"team": "growth"} and v.metrics == {"auc": 0.91}
    assert v.baseline is not None and v.baseline["rows"] == 200 and "key" not in v.baseline


def test_alias_moves_are_audited_and_resolve(any_store: Store, sklearn_model_file: Path) -> None:
    _upload(any_store, sklearn_model_file, aliases=["prod"])
    _upload(any_store, sklearn_model_file)
    assert registry.get_version(any_store, "churn@prod").version == 1
    registry.set_alias(any_store, ref="churn:2", alias="prod", actor="alice")
    assert registry.get_version(any_store, "churn@prod").version == 2
    assert registry.get_version(any_store, "churn").version == 2
    moves = audit.list_audit(any_store, resource="churn@prod")
    assert [(m.actor, m.before, m.after) for m in moves] == [
        ("alice", {"version": 1}, {"version": 2}),
        ("local", None, {"version": 1}),
    ]


def test_missing_things_raise_not_found(any_store: Store, sklearn_model_file: Path) -> None:
    with pytest.raises(ModelNotFound, match="'nope' does not exist") as info:
        registry.get_version(any_store, "nope")
    assert "cloche models list" in (info.value.hint or "")
    _upload(any_store, sklearn_model_file)
    with pytest.raises(VersionNotFound, match="versions: 1"):
        registry.get_version(any_store, "churn:7")
    with pytest.raises(AliasNotFound):
        registry.get_version(any_store, "churn@prod")
    with pytest.raises(VersionNotFound):
        registry.set_alias(any_store, ref="churn:9", alias="prod")


def test_label_search_finds_models_with_matching_versions(
    any_store: Store, sklearn_model_file: Path
) -> None:
    _upload(any_store, sklearn_model_file, name="a", labels={"team": "risk"})
    _upload(any_store, sklearn_model_file, name="b", labels={"team": "growth"})
    assert [m.name for m in registry.list_models(any_store, labels={"team": "risk"})] == ["a"]
    assert [m.name for m in registry.list_models(any_store, search="B")] == ["b"]


def test_delete_version_then_model_removes_artifacts(
    any_store: Store, sklearn_model_file: Path
) -> None:
    _upload(any_store, sklearn_model_file, aliases=["prod"])
    _upload(any_store, sklearn_model_file)
    key = registry.artifact_location(any_store, "churn:1")[1]
    result = registry.delete(any_store, ref="churn@prod")
    assert result.deleted_versions == [1] and not result.model_deleted
    assert not (Path(any_store.artifacts.root) / key).exists()
    assert registry.get_model(any_store, "churn").aliases == {}
    assert registry.delete(any_store, ref="churn").model_deleted
    with pytest.raises(ModelNotFound):
        registry.get_model(any_store, "churn")


def test_loaded_model_predicts_like_the_original(
    any_store: Store, sklearn_model_file: Path, iris_like: tuple[np.ndarray, np.ndarray]
) -> None:
    import joblib

    _upload(any_store, sklearn_model_file)
    frame = pd.DataFrame(iris_like[0], columns=["tenure", "spend", "visits", "age"])
    loaded = registry.load_model(any_store, "churn:1")
    np.testing.assert_array_equal(
        loaded.predict(frame), joblib.load(sklearn_model_file).predict(frame)
    )


def test_failed_upload_leaves_nothing_behind(any_store: Store, tmp_path: Path) -> None:
    bad = tmp_path / "broken.joblib"
    bad.write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(Exception):  # noqa: B017 - the runtime's exact error is tested elsewhere
        _upload(any_store, bad, framework="sklearn")
    assert not list((Path(any_store.artifacts.root) / "models").rglob("*.joblib"))
    assert registry.list_models(any_store) == []


def test_oversized_upload_is_refused(any_store: Store, sklearn_model_file: Path) -> None:
    any_store.max_upload_bytes = 10
    with pytest.raises(PayloadTooLarge, match="over the upload limit of 10 bytes") as info:
        _upload(any_store, sklearn_model_file)
    assert "CLOCHE_STORE__MAX_UPLOAD_MB" in (info.value.hint or "")


def test_invalid_name_is_refused_before_anything_is_stored(
    any_store: Store, sklearn_model_file: Path
) -> None:
    with pytest.raises(InvalidName):
        _upload(any_store, sklearn_model_file, name="../../etc")
    assert not (Path(any_store.artifacts.root) / "models").exists()


def test_concurrent_uploads_get_distinct_versions(any_store: Store, sklearn_model_file: Path):
    results: list[int] = []
    errors: list[BaseException] = []

    def upload() -> None:
        try:
            results.append(_upload(any_store, sklearn_model_file).version)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=upload) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(results) == [1, 2, 3, 4]


def test_sqlite_store_runs_in_wal_mode(store: Store) -> None:
    with store.transaction() as session:
        assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_migrations_are_idempotent(any_store: Store) -> None:
    from cloche.store.db import head_revision, migrate

    migrate(any_store.db.engine)
    with any_store.transaction() as session:
        revision = session.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert revision == head_revision() == "0012"
