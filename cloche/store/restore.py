"""Restore a store from a ``cloche backup create`` archive (see backup.py for what it holds).

The whole archive is verified in a staging folder first; the database is loaded in one
transaction (SQLite: a new file renamed into place) and migrated to this cloche's newest schema;
only then are the artifacts and the payload log moved in. A store that holds data is refused
unless ``force``, before anything in it is touched.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import fsspec
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import CompileError, DataError, IntegrityError, OperationalError

from cloche.config import Settings
from cloche.errors import BackupInvalid, RestoreTargetNotEmpty, Unavailable
from cloche.store import archive, dump
from cloche.store.artifacts import ArtifactStore
from cloche.store.backup import (
    SKIPPED_LOG_FILES,
    BackupSummary,
    describe_db,
    remove_tree,
    staging_folder,
)
from cloche.store.db import (
    MIGRATION_LOCK_KEY,
    current_revision,
    make_engine,
    refuse_unknown,
    upgrade,
)
from cloche.store.layout import log_root
from cloche.store.private import private_dir


def restore_backup(settings: Settings, source: Path, *, force: bool = False) -> BackupSummary:
    """Put the store in ``source`` back into ``settings``'s store; stop its servers first.

    Refuses a store that holds data unless ``force`` (which replaces it), and any archive that
    is not whole and unchanged; in both cases nothing in the target has been touched.
    """
    source = source.resolve()
    home = private_dir(settings.home.resolve())
    if not force:
        _refuse_non_empty(settings, log_root(home))
    with staging_folder(home, "restore") as staging:
        manifest = archive.read_archive(source, staging)
        revision = manifest.get("schema_revision")
        if not isinstance(revision, str) or not revision:
            raise BackupInvalid("the backup's manifest names no schema revision")
        refuse_unknown(revision, what=f"the backup {source.name}")
        tables = _table_names(manifest)
        counts = _restore_database(settings, staging, revision, tables, force=force)
        artifacts = ArtifactStore(settings.artifacts_url, cache_dir=home / "cache")
        artifact_files = _restore_artifacts(artifacts, staging / "artifacts", force=force)
        log_files = _restore_folder(staging / "logs", log_root(home), force=force)
    return BackupSummary(
        source, revision, counts, artifact_files, log_files, bytes=source.stat().st_size
    )


# --- --------------------------------------------------------------------------------


def _refuse_non_empty(settings: Settings, logs: Path) -> None:
    """RestoreTargetNotEmpty naming what holds data; creates nothing (no database file)."""
    where: list[str] = []
    if _database_has_rows(settings):
        where.append(f"the database {describe_db(settings)}")
    fs, root = fsspec.core.url_to_fs(settings.artifacts_url)
    if fs.exists(root) and fs.find(root):
        where.append(f"the artifact store {settings.artifacts_url}")
    if logs.is_dir() and any(
        p.is_file() and p.name not in SKIPPED_LOG_FILES for p in logs.rglob("*")
    ):
        where.append(f"the payload log {logs}")
    if where:
        raise RestoreTargetNotEmpty(
            f"refusing to restore over a store that holds data: {'; '.join(where)}",
            hint="restore into an empty CLOCHE_HOME / database, or pass --force to replace "
            "what is there (stop every `cloche up` on this store first)",
        )


def _database_has_rows(settings: Settings) -> bool:
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
        return False
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            return dump.has_rows(conn)
    except OperationalError as exc:
        raise Unavailable(
            f"cannot open the metadata database: {exc.orig}",
            hint="check CLOCHE_DB_URL and that the database server is running",
        ) from exc
    finally:
        engine.dispose()


def _table_names(manifest: dict[str, Any]) -> list[str]:
    tables = manifest.get("tables")
    if not isinstance(tables, dict):
        raise BackupInvalid("the backup's manifest lists no tables")
    for name in tables:
        if f"db/{name}.jsonl" not in manifest["members"]:
            raise BackupInvalid(f"the backup lists table {name!r} but does not hold it")
    return list(tables)


def _restore_database(
    settings: Settings, staging: Path, revision: str, tables: list[str], *, force: bool
) -> dict[str, int]:
    """Load the dump at its revision, then migrate to this cloche's newest, in one go."""
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        # Built aside and renamed over the live file: the database is the old one or the new.
        fresh = staging / "restored.db"
        engine = create_engine(f"sqlite:///{fresh}")
        try:
            with engine.begin() as conn:
                counts = _load(conn, staging, revision, tables)
        finally:
            engine.dispose()
        live = Path(url.database or "")
        private_dir(live.parent)
        for suffix in ("-wal", "-shm"):  # an old WAL beside the new file would be replayed
            Path(f"{live}{suffix}").unlink(missing_ok=True)
        os.chmod(fresh, 0o600)
        os.replace(fresh, live)
        return counts
    engine = make_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            if force:
                dump.drop_all(conn)
            elif current_revision(conn) is not None and dump.has_rows(conn):
                raise RestoreTargetNotEmpty("the database was written to while restoring")
            elif current_revision(conn) is not None:
                dump.drop_all(conn)  # an empty schema, perhaps at another revision
            return _load(conn, staging, revision, tables)
    finally:
        engine.dispose()


def _load(conn: Connection, staging: Path, revision: str, tables: list[str]) -> dict[str, int]:
    upgrade(conn, revision)
    try:
        counts = dump.load_tables(conn, staging / "db", tables)
    except (CompileError, IntegrityError, DataError, ValueError) as exc:
        # Rows that do not fit their schema revision: hand-edited, manifest included.
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0][:300]
        raise BackupInvalid(
            f"the backup's rows do not load into schema revision {revision}: {detail}"
        ) from None
    upgrade(conn, "head")
    return counts


def _restore_artifacts(store: ArtifactStore, staged: Path, *, force: bool) -> int:
    if force and store.fs.exists(store.root):
        if store.is_local:
            remove_tree(Path(store.root))
        else:
            store.fs.rm(store.root, recursive=True)
    if not staged.is_dir():
        return 0
    if store.is_local:
        count = _move_tree(staged, Path(store.root))
        for path in Path(store.root).rglob("*"):
            if path.is_file():
                os.chmod(path, 0o400)  # as the artifact store writes them: read-only
        return count
    count = 0
    for path in sorted(p for p in staged.rglob("*") if p.is_file()):
        store.fs.put_file(str(path), f"{store.root}/{path.relative_to(staged).as_posix()}")
        count += 1
    return count


def _restore_folder(staged: Path, target: Path, *, force: bool) -> int:
    if force and target.exists():
        remove_tree(target)
    if not staged.is_dir():
        return 0
    return _move_tree(staged, target)


def _move_tree(source: Path, target: Path) -> int:
    """Move the files under ``source`` to the same places under ``target`` (private modes)."""
    private_dir(target)
    count = 0
    for path in sorted(source.rglob("*")):
        dest = target / path.relative_to(source)
        if path.is_dir():
            private_dir(dest)
            continue
        os.chmod(path, 0o600)
        os.replace(path, dest)
        count += 1
    return count
