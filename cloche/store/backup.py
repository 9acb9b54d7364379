"""Back up a store to one archive (``restore.py`` puts one back): the metadata database, the
artifacts and the payload log of ``CLOCHE_HOME`` (or of ``CLOCHE_DB_URL`` and
``CLOCHE_STORE__ARTIFACTS_URL``).

Consistent while servers run: SQLite is copied with its online backup API (a snapshot no writer
waits on), PostgreSQL is read in one REPEATABLE READ transaction, and either is written as a
portable table dump (``dump.py``) that restores into SQLite or PostgreSQL. Artifacts are
immutable; the payload log is copied holding its compaction lock, so no segment turns into a
partition halfway. A restore verifies the whole archive in a staging folder first, loads the
database in one transaction (SQLite: a new file renamed into place) and only then moves the
files in. The local admin token is not archived: ``cloche up`` writes a new one.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from cloche.config import Settings
from cloche.errors import (
    BackupExists,
    BackupInconsistent,
    BackupInvalid,
    InvalidInput,
    Unavailable,
)
from cloche.store import archive, dump
from cloche.store.artifacts import ArtifactStore
from cloche.store.db import (
    current_revision,
    make_engine,
)
from cloche.store.layout import log_root
from cloche.store.private import private_dir

LOCK_WAIT_SECONDS = 60.0
SKIPPED_LOG_FILES = {"compact.lock"}


@dataclass
class BackupSummary:
    """What an archive holds (or what a restore put back)."""

    path: Path
    schema_revision: str
    tables: dict[str, int] = field(default_factory=dict)
    artifact_files: int = 0
    log_files: int = 0
    bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "schema_revision": self.schema_revision,
            "tables": self.tables,
            "artifact_files": self.artifact_files,
            "log_files": self.log_files,
            "bytes": self.bytes,
        }


def create_backup(settings: Settings, dest: Path, *, force: bool = False) -> BackupSummary:
    """Write the store of ``settings`` to ``dest`` (mode 0600), while servers may be running."""
    dest = dest.resolve()
    if not dest.parent.is_dir():
        raise InvalidInput(f"{dest.parent} is not a folder", hint="create it first")
    if dest.exists() and not force:
        raise BackupExists(f"{dest} already exists", hint="pick a new name, or pass --force")
    home = settings.home.resolve()
    partial = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    with staging_folder(home, "backup") as staging:
        with _database_snapshot(settings, staging) as conn:
            revision = current_revision(conn)
            if revision is None:
                raise BackupInvalid(
                    f"there is no cloche store at {describe_db(settings)} to back up",
                    hint="check CLOCHE_HOME / CLOCHE_DB_URL",
                )
            tables = dump.dump_tables(conn, staging / "db")
            backend = conn.dialect.name
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                writer = archive.ArchiveWriter(out)
                for name in sorted(tables):
                    writer.add_file(f"db/{name}.jsonl", staging / "db" / f"{name}.jsonl")
                artifact_files = _add_artifacts(settings, home, writer)
                log_files = _add_logs(log_root(home), staging / "logs", writer)
                _check_versions_have_files(staging / "db", writer.members)
                writer.finish(
                    {
                        "format": archive.FORMAT,
                        "format_version": archive.FORMAT_VERSION,
                        "created_at": datetime.now(UTC).isoformat(),
                        "cloche_version": _version(),
                        "schema_revision": revision,
                        "database": backend,
                        "tables": tables,
                        "artifact_files": artifact_files,
                        "log_files": log_files,
                    }
                )
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, dest)
        finally:
            partial.unlink(missing_ok=True)
    return BackupSummary(
        dest, revision, tables, artifact_files, log_files, bytes=dest.stat().st_size
    )


# --- backing up -------------------------------------------------------------------------------


@contextmanager
def staging_folder(home: Path, what: str) -> Iterator[Path]:
    """A private scratch folder in the home (same filesystem: restored files are renamed)."""
    root = private_dir(home / "tmp")
    folder = Path(tempfile.mkdtemp(prefix=f"{what}-", dir=root))
    try:
        yield folder
    finally:
        remove_tree(folder)


@contextmanager
def _database_snapshot(settings: Settings, staging: Path) -> Iterator[Connection]:
    """A connection that sees one consistent state of the database, whatever writes go on."""
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        live = Path(url.database or "")
        if not live.is_file():
            raise BackupInvalid(
                f"there is no cloche store at {live} to back up", hint="check CLOCHE_HOME"
            )
        copy = staging / "snapshot.db"
        # The online backup API copies pages under SQLite's own locking: a consistent
        # snapshot, even with writers in other processes (a file copy could tear the WAL).
        with (
            sqlite3.connect(live, timeout=10) as src,
            sqlite3.connect(copy) as dst,
        ):
            src.backup(dst)
        src.close()
        dst.close()
        engine = create_engine(f"sqlite:///{copy}")
        try:
            with engine.connect() as conn:
                yield conn
        finally:
            engine.dispose()
        return
    engine = make_engine(settings.database_url)
    try:
        with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
            conn.execute(text("SET TRANSACTION READ ONLY"))
            yield conn
            conn.rollback()
    except OperationalError as exc:
        raise Unavailable(
            f"cannot read the metadata database: {exc.orig}",
            hint="check CLOCHE_DB_URL and that the database server is running",
        ) from exc
    finally:
        engine.dispose()


def _add_artifacts(settings: Settings, home: Path, writer: archive.ArchiveWriter) -> int:
    store = ArtifactStore(settings.artifacts_url, cache_dir=home / "cache")
    if not store.fs.exists(store.root):
        return 0
    count = 0
    for path, info in sorted(store.fs.find(store.root, detail=True).items()):
        rel = path[len(store.root) :].lstrip("/")
        with store.fs.open(path, "rb") as fh:
            writer.add_stream(f"artifacts/{rel}", fh, int(info["size"]))
        count += 1
    return count


@contextmanager
def _compaction_paused(root: Path) -> Iterator[None]:
    """Hold the log's compaction lock (waiting for a running compaction to end)."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    with (root / "compact.lock").open("ab") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise Unavailable(
                        f"the payload log under {root} stayed locked by a compaction for "
                        f"{LOCK_WAIT_SECONDS:.0f} s",
                        hint="run the backup again",
                    ) from None
                time.sleep(0.1)
        yield


def _add_logs(root: Path, staging: Path, writer: archive.ArchiveWriter) -> int:
    """Copy the payload log: Parquet partitions, closed and open segments, worker counters."""
    if not root.is_dir():
        return 0
    count = 0
    with _compaction_paused(root):
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root).as_posix()
            if path.is_symlink() or not path.is_file() or rel in SKIPPED_LOG_FILES:
                continue
            try:
                data = path.read_bytes()
            except FileNotFoundError:  # a temporary file renamed away meanwhile
                continue
            if path.suffix == ".jsonl":
                # An open segment may end in a line still being written: keep whole lines.
                data = data[: data.rfind(b"\n") + 1]
            copy = staging / rel
            copy.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            copy.write_bytes(data)
            writer.add_file(f"logs/{rel}", copy)
            copy.unlink()
            count += 1
    return count


def _check_versions_have_files(db: Path, members: dict[str, Any]) -> None:
    """Every model version in the dump has its files in the archive (a version deleted while
    the artifacts were copied would restore without them)."""
    path = db / "model_versions.jsonl"
    if not path.is_file():
        return
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            files = dump.decode(row.get("files")) or {}
            for rel in files:
                if f"artifacts/{row['artifact_key']}/{rel}" not in members:
                    raise BackupInconsistent(
                        f"the files of model version {row['artifact_key']} went away while the "
                        "backup ran (the version was deleted meanwhile)",
                        hint="run the backup again",
                    )


def remove_tree(path: Path) -> None:
    # Artifact files are read-only; their folders are the owner's, so deleting them works.
    shutil.rmtree(path, ignore_errors=True)


def describe_db(settings: Settings) -> str:
    return make_url(settings.database_url).render_as_string(hide_password=True)


def _version() -> str:
    from cloche import __version__

    return __version__
