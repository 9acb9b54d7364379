"""The metadata database: engine, sessions and schema migrations.

SQLite (WAL mode) by default, PostgreSQL when ``CLOCHE_DB_URL`` names it. The schema is owned
by Alembic; ``open_database`` brings any database to the newest revision before use.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from cloche.errors import SchemaTooNew, Unavailable

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_migrate_lock = threading.Lock()
MIGRATION_LOCK_KEY = 0x636C6F636865  # "cloche"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Several processes (CLI beside a server) share the file; wait rather than fail.
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("", "psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed, pool_pre_ping=True)


def _alembic_config() -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str:
    """The newest schema revision this cloche knows."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None  # the package ships its migrations
    return head


def is_known_revision(revision: str) -> bool:
    """Whether ``revision`` is one of this cloche's migrations (not one of a newer version)."""
    from alembic.script import ScriptDirectory

    try:
        return ScriptDirectory.from_config(_alembic_config()).get_revision(revision) is not None
    except Exception:  # alembic raises several kinds for an id it cannot resolve
        return False


def current_revision(conn: Connection) -> str | None:
    """The schema revision ``conn``'s database is at; None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def upgrade(conn: Connection, target: str = "head") -> None:
    """Run the migrations up to ``target`` on ``conn``, inside its transaction."""
    from alembic import command

    cfg = _alembic_config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, target)


def refuse_unknown(revision: str, *, what: str) -> None:
    """SchemaTooNew when ``revision`` was written by a newer cloche than this one."""
    if is_known_revision(revision):
        return
    from cloche import __version__

    raise SchemaTooNew(
        f"{what} is at schema revision {revision!r}, which this cloche ({__version__}) does not "
        f"know: a newer cloche wrote it (the newest revision known here is {head_revision()!r})",
        hint="run the cloche version that wrote it, or a newer one; cloche never downgrades "
        "a schema by itself (see docs/operations/upgrades.md)",
    )


def migrate(engine: Engine) -> None:
    """Upgrade the schema to the newest Alembic revision (a no-op when already there).

    A database from a newer cloche is refused before anything runs: migrating it is
    impossible, and serving it with an older schema in mind could corrupt it.
    """
    head = head_revision()
    with _migrate_lock, engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Replicas starting together on one database take turns; the lock ends with the
            # transaction, and a replica that waited then finds the schema already current.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        current = current_revision(conn)
        if current == head:
            return
        if current is not None:
            refuse_unknown(current, what="the metadata database")
        upgrade(conn)


class Database:
    """Sessions over one engine; ``transaction()`` is the unit of work."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A read or write session committed on success and rolled back on error."""
        try:
            with self._sessions.begin() as session:
                yield session
        except OperationalError as exc:
            raise Unavailable(
                f"the metadata database is unavailable: {exc.orig}",
                hint="check CLOCHE_DB_URL and that the database server is running",
            ) from exc

    def dispose(self) -> None:
        self.engine.dispose()


def open_database(url: str) -> Database:
    """Connect to ``url`` and migrate it to the newest schema."""
    engine = make_engine(url)
    try:
        migrate(engine)
    except OperationalError as exc:
        raise Unavailable(
            f"cannot open the metadata database {make_url(url).render_as_string()}: {exc.orig}",
            hint="check CLOCHE_DB_URL and that the database server is running",
        ) from exc
    return Database(engine)
