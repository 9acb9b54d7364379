"""A portable dump of the metadata database: each table as JSON lines, loadable into SQLite or
PostgreSQL at the same schema revision.

Tables are reflected from the database itself (not taken from ``tables.py``), so a database at
an older revision dumps and loads with the columns it has; ``backup.py`` migrates it to the
newest revision afterwards. Values that JSON cannot hold as they are carry a one-key tag, and
every JSON column value is wrapped too, so no stored value is ever mistaken for a tag.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, MetaData, Table, func, select, text

from cloche.errors import BackupInvalid

VERSION_TABLE = "alembic_version"
BATCH = 1000


def encode(value: Any) -> Any:
    """A JSON-able form of one column value (see ``decode``)."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)  # SQLite keeps UTC, naive
        return {"$dt": aware.astimezone(UTC).isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$b64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, Decimal):
        return {"$dec": str(value)}
    if isinstance(value, dict | list):
        return {"$json": value}
    return value


def decode(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        raise BackupInvalid(f"unexpected value in a table dump: {str(value)[:80]}")
    ((tag, inner),) = value.items()
    if tag == "$dt":
        return datetime.fromisoformat(inner)
    if tag == "$date":
        return date.fromisoformat(inner)
    if tag == "$b64":
        return base64.b64decode(inner)
    if tag == "$dec":
        return Decimal(inner)
    if tag == "$json":
        return inner
    raise BackupInvalid(f"unknown value tag {tag!r} in a table dump")


def reflect(conn: Connection) -> list[Table]:
    """The database's tables, parents before children, without Alembic's own."""
    meta = MetaData()
    meta.reflect(conn)
    return [t for t in meta.sorted_tables if t.name != VERSION_TABLE]


def dump_tables(conn: Connection, folder: Path) -> dict[str, int]:
    """Write ``folder/<table>.jsonl`` for every table; the row count of each."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for table in reflect(conn):
        order = list(table.primary_key.columns) or list(table.columns)
        count = 0
        with (folder / f"{table.name}.jsonl").open("w", encoding="utf-8") as fh:
            for row in conn.execute(select(table).order_by(*order)).mappings():
                line = {key: encode(value) for key, value in row.items()}
                fh.write(json.dumps(line, separators=(",", ":"), allow_nan=True) + "\n")
                count += 1
        counts[table.name] = count
    return counts


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            yield {key: decode(value) for key, value in json.loads(line).items()}


def load_tables(conn: Connection, folder: Path, tables: list[str]) -> dict[str, int]:
    """Replace the rows of every table named in ``tables`` with its dump from ``folder``.

    The schema must already be at the dump's revision. Rows a migration seeded (the serving
    state) are deleted first, so the dump's own rows take their place.
    """
    present = {t.name: t for t in reflect(conn)}
    missing = sorted(set(tables) - set(present))
    if missing:
        raise BackupInvalid(f"the backup has tables this schema lacks: {', '.join(missing)}")
    ordered = [t for t in present.values() if t.name in tables]
    for table in reversed(ordered):
        conn.execute(table.delete())
    counts: dict[str, int] = {}
    for table in ordered:
        batch: list[dict[str, Any]] = []
        count = 0
        for row in _rows(folder / f"{table.name}.jsonl"):
            batch.append(row)
            if len(batch) >= BATCH:
                conn.execute(table.insert(), batch)
                count, batch = count + len(batch), []
        if batch:
            conn.execute(table.insert(), batch)
            count += len(batch)
        counts[table.name] = count
    if conn.dialect.name == "postgresql":
        _reset_sequences(conn, ordered)
    return counts


def _reset_sequences(conn: Connection, tables: list[Table]) -> None:
    """Rows were inserted with their ids: move each serial's next value past the largest."""
    for table in tables:
        for column in table.primary_key.columns:
            sequence = conn.execute(
                text("SELECT pg_get_serial_sequence(:table, :column)"),
                {"table": table.name, "column": column.name},
            ).scalar()
            if sequence is None:
                continue
            top = conn.execute(select(func.max(column))).scalar()
            conn.execute(
                text("SELECT setval(CAST(:seq AS regclass), :value, :called)"),
                {"seq": sequence, "value": top or 1, "called": top is not None},
            )


def has_rows(conn: Connection) -> bool:
    """Whether any table but Alembic's holds a row the migrations did not seed."""
    for table in reflect(conn):
        if table.name == "serving_state":  # seeded by a migration
            continue
        if conn.execute(select(func.count()).select_from(table)).scalar():
            return True
    return False


def drop_all(conn: Connection) -> None:
    """Drop every table, Alembic's included (a forced restore starts from nothing)."""
    meta = MetaData()
    meta.reflect(conn)
    meta.drop_all(conn)
