"""The Store: metadata database plus artifact store, opened from Settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.orm import Session

from cloche.config import Settings
from cloche.store.artifacts import ArtifactStore
from cloche.store.db import Database, open_database
from cloche.store.layout import SharedLog
from cloche.store.private import private_dir, private_file


class Store:
    """What every service function needs: ``transaction()`` and ``artifacts``."""

    def __init__(
        self,
        db: Database,
        artifacts: ArtifactStore,
        *,
        home: Path,
        max_upload_bytes: int,
        shared_log: SharedLog | None = None,
    ) -> None:
        self.db = db
        self.artifacts = artifacts
        self.home = home
        self.max_upload_bytes = max_upload_bytes
        self.shared_log = shared_log  # where replicas write the compacted payload log, if shared

    @classmethod
    def open(cls, settings: Settings) -> Store:
        home = private_dir(settings.home.resolve())
        db = open_database(settings.database_url)
        if settings.db_url is None:  # SQLite in home: the file and its WAL are the owner's only
            for suffix in ("", "-wal", "-shm"):
                private_file(home / f"cloche.db{suffix}")
        return cls(
            db,
            ArtifactStore(settings.artifacts_url, cache_dir=home / "cache"),
            home=home,
            max_upload_bytes=settings.max_upload_bytes,
            shared_log=(
                SharedLog(settings.logs.shared, settings.logs.endpoint_url)
                if settings.logs.shared
                else None
            ),
        )

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: committed when the block ends, rolled back if it raises."""
        with self.db.session() as session:
            yield session

    def close(self) -> None:
        self.db.dispose()
