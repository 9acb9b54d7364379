"""Backups of real stores restore into SQLite or PostgreSQL; bad archives and full targets are
refused before anything is written."""

from __future__ import annotations

import hashlib
import io
import json
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest

import cloche
from cloche.auth import tokens
from cloche.config import Settings
from cloche.errors import (
    BackupExists,
    BackupInvalid,
    RestoreTargetNotEmpty,
    SchemaTooNew,
)
from cloche.store.backup import create_backup
from cloche.store.restore import restore_backup
from cloche.store.store import Store


def _settings(tmp_path: Path, name: str, backend: str, request: pytest.FixtureRequest) -> Settings:
    db_url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    return Settings(home=tmp_path / name, db_url=db_url)


def populate(settings: Settings, model_file: Path) -> str:
    """Two versions of `churn`, `prod` on the second, an endpoint serving it and a viewer
    token; the token's secret."""
    with cloche.Client(settings=settings) as sdk:
        sdk.models.upload(model_file, name="churn")
        sdk.models.upload(model_file, name="churn", description="second")
        sdk.models.alias("churn:2", "prod")
        sdk.endpoints.create("churn", log_sample_rate=0.5)
        sdk.endpoints.deploy("churn", "churn@prod")
        return sdk.tokens.create(role="viewer", name="reader").token


def snapshot(settings: Settings) -> dict[str, Any]:
    """What a user sees of the registry: to compare a store with its restored copy."""
    with cloche.Client(settings=settings) as sdk:
        prod = sdk.models.show("churn@prod")
        endpoint = sdk.endpoints.get("churn")
        return {
            "prod": (prod.version, prod.sha256, prod.description, prod.aliases, prod.created_at),
            "versions": [v.version for v in sdk.models.get("churn").versions],
            "endpoint": (
                endpoint.log_sample_rate,
                [(d.model, d.version, d.traffic) for d in endpoint.deployments],
            ),
            "tokens": sorted((t.id, t.name, t.role) for t in sdk.tokens.list()),
            "audit": len(sdk.audit.list(limit=1000)),
        }


def _empty(settings: Settings) -> bool:
    home = settings.home
    files = [p for p in home.rglob("*") if p.is_file()] if home.exists() else []
    return not any(p.name.startswith("cloche.db") or "artifacts" in p.parts for p in files)


@pytest.mark.parametrize(
    ("source", "target"),
    [("sqlite", "postgres"), ("postgres", "sqlite"), ("sqlite", "sqlite")],
)
def test_a_backup_restores_the_registry_and_tokens_into_either_backend(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    sklearn_model_file: Path,
    source: str,
    target: str,
) -> None:
    old = _settings(tmp_path, "old", source, request)
    secret = populate(old, sklearn_model_file)
    before = snapshot(old)
    summary = create_backup(old, tmp_path / "store.tar.gz")
    assert summary.tables["models"] == 1 and summary.tables["model_versions"] == 2
    assert summary.artifact_files == 2

    new = _settings(tmp_path, "new", target, request)
    restored = restore_backup(new, tmp_path / "store.tar.gz")
    assert restored.tables == summary.tables
    assert snapshot(new) == before
    store = Store.open(new)
    try:
        assert tokens.authenticate(store, secret).role == "viewer"
    finally:
        store.close()
    with cloche.Client(settings=new) as sdk:
        # Ids continue past the restored rows (PostgreSQL's sequences were moved on).
        assert sdk.models.upload(sklearn_model_file, name="churn").version == 3
        sdk.endpoints.create("second")
        # The restored artifact loads (its hash is checked against the restored row).
        assert len(sdk.models.load("churn@prod").predict([[0.1, 0.2, 0.3, 0.4]])) == 1


def test_restore_refuses_a_store_with_data_unless_forced(
    tmp_path: Path, sklearn_model_file: Path
) -> None:
    settings = Settings(home=tmp_path / "home")
    populate(settings, sklearn_model_file)
    before = snapshot(settings)
    create_backup(settings, tmp_path / "store.tar.gz")
    with cloche.Client(settings=settings) as sdk:
        sdk.models.alias("churn:1", "prod")  # a change made after the backup
    with pytest.raises(RestoreTargetNotEmpty, match="holds data") as refused:
        restore_backup(settings, tmp_path / "store.tar.gz")
    assert "--force" in (refused.value.hint or "")
    assert snapshot(settings)["prod"][0] == 1  # untouched
    restore_backup(settings, tmp_path / "store.tar.gz", force=True)
    assert snapshot(settings) == before


def test_a_backup_never_replaces_a_file_and_is_the_owners_only(
    tmp_path: Path, sklearn_model_file: Path
) -> None:
    settings = Settings(home=tmp_path / "home")
    populate(settings, sklearn_model_file)
    archive = create_backup(settings, tmp_path / "store.tar.gz").path
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    with pytest.raises(BackupExists):
        create_backup(settings, archive)
    create_backup(settings, archive, force=True)
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600


def test_restored_files_are_private(tmp_path: Path, sklearn_model_file: Path) -> None:
    old = Settings(home=tmp_path / "old")
    populate(old, sklearn_model_file)
    create_backup(old, tmp_path / "store.tar.gz")
    new = Settings(home=tmp_path / "new")
    restore_backup(new, tmp_path / "store.tar.gz")
    paths = [new.home, *new.home.rglob("*")]
    assert len([p for p in paths if p.is_file()]) >= 3  # the database and two artifacts
    wide = [p for p in paths if stat.S_IMODE(p.stat().st_mode) & 0o077]
    assert wide == []


def _rewrite(archive: Path, out: Path, change: dict[str, bytes | None]) -> Path:
    """A copy of ``archive`` with members replaced (bytes) or dropped (None)."""
    with tarfile.open(archive) as src, tarfile.open(out, "w:gz") as dst:
        for member in src:
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            if member.name in change:
                if change[member.name] is None:
                    continue
                data = change[member.name]  # type: ignore[assignment]
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    return out


def _manifest(archive: Path) -> dict[str, Any]:
    with tarfile.open(archive) as tar:
        return json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "damage", ["tampered row", "dropped member", "newer schema", "rows and manifest rewritten"]
)
def test_a_bad_archive_leaves_the_target_untouched(
    tmp_path: Path, sklearn_model_file: Path, damage: str
) -> None:
    old = Settings(home=tmp_path / "old")
    populate(old, sklearn_model_file)
    good = create_backup(old, tmp_path / "store.tar.gz").path
    manifest = _manifest(good)
    artifact = next(name for name in manifest["members"] if name.startswith("artifacts/"))
    if damage == "tampered row":
        change: dict[str, bytes | None] = {"db/api_tokens.jsonl": b'{"id":"x"}\n'}
        expected: type[Exception] = BackupInvalid
    elif damage == "dropped member":
        change = {artifact: None}
        expected = BackupInvalid
    elif damage == "rows and manifest rewritten":
        # Hashes match, but the row does not fit its schema: caught when it loads.
        row = b'{"id":9,"name":"x","no_such_column":1}\n'
        members = {
            **manifest["members"],
            "db/models.jsonl": {"sha256": hashlib.sha256(row).hexdigest(), "size": len(row)},
        }
        rewritten = json.dumps({**manifest, "members": members}).encode()
        change = {"db/models.jsonl": row, "manifest.json": rewritten}
        expected = BackupInvalid
    else:
        newer = {**manifest, "schema_revision": "0999_from_the_future"}
        change = {"manifest.json": json.dumps(newer).encode()}
        expected = SchemaTooNew
    bad = _rewrite(good, tmp_path / "bad.tar.gz", change)

    new = Settings(home=tmp_path / "new")
    with pytest.raises(expected) as refused:
        restore_backup(new, bad)
    if damage == "newer schema":
        assert "0999_from_the_future" in refused.value.message
    if damage == "rows and manifest rewritten":
        assert "do not load into schema revision" in refused.value.message
    assert _empty(new)
    assert not (new.home / "tmp").exists() or not any((new.home / "tmp").iterdir())
    restore_backup(new, good)  # and the good archive still restores there
    assert snapshot(new) == snapshot(old)
