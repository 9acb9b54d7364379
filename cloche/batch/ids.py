"""Jobs and schedules are named by their id or a unique prefix of it, as git names commits."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute, Session

from cloche.errors import InvalidInput, NotFound

RowT = TypeVar("RowT")
MIN_PREFIX = 4  # "bj_a": shorter prefixes match too much to be meant
SHOWN = 5  # matches named in an ambiguity error


def find_row(
    session: Session,
    table: type[RowT],
    id_column: InstrumentedAttribute[Any],
    given: str,
    *,
    missing: NotFound,
) -> RowT:
    """The row whose id is ``given`` or starts with it; ``missing`` when none, and an
    InvalidInput naming the candidates when several do."""
    row = session.get(table, given)
    if row is not None:
        return row
    rows: list[RowT] = []
    if len(given) >= MIN_PREFIX:
        query = select(table).where(id_column.startswith(given, autoescape=True))
        rows = list(session.scalars(query.limit(SHOWN + 1)))
    if not rows:
        raise missing
    if len(rows) > 1:
        ids = sorted(str(getattr(r, id_column.key)) for r in rows[:SHOWN])
        more = ", ..." if len(rows) > SHOWN else ""
        raise InvalidInput(
            f"{given!r} is the start of several ids: {', '.join(ids)}{more}",
            hint="type more of the id to pick one",
        )
    return rows[0]
