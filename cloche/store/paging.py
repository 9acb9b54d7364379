"""One way to ask for a page of any listing: search, sort, limit and offset.

Offset, not a keyset cursor: the console shows "page 3 of 40" and jumps to any page, and a
keyset cursor cannot jump. Every sort ends on the primary key, so pages of rows that tie on the
sort key neither repeat nor skip a row, and at the platform's scale (10,000 runs) an indexed
OFFSET costs milliseconds (``bench/console.py`` times the deepest page). The total comes from a
second, cheap COUNT over the same filters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel
from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.orm import Session

from cloche.errors import InvalidPage

MAX_LIMIT = 200
DEFAULT_LIMIT = 50
Order = Literal["asc", "desc"]
T = TypeVar("T")
# A SELECT of any columns (SQLAlchemy types its rows with a TypeVarTuple).
AnySelect = Select[*tuple[Any, ...]]


def as_order(value: str | None) -> Order | None:
    """``value`` as a sort direction; InvalidPage unless it is asc, desc or None."""
    if value is None:
        return None
    if value == "asc":
        return "asc"
    if value == "desc":
        return "desc"
    raise InvalidPage(f"order {value!r} is not asc or desc", hint="use order=asc or order=desc")


@dataclass(frozen=True)
class PageRequest:
    """What a caller asks for; ``sort`` None means the listing's own default order."""

    q: str | None = None
    sort: str | None = None
    order: Order | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise InvalidPage(
                f"limit {self.limit!r} is not a whole number from 1 to {MAX_LIMIT}",
                hint=f"ask for limit=1..{MAX_LIMIT}; larger values are clamped to {MAX_LIMIT}",
            )
        if isinstance(self.offset, bool) or not isinstance(self.offset, int) or self.offset < 0:
            raise InvalidPage(
                f"offset {self.offset!r} is not a whole number of 0 or more",
                hint="offset counts the rows to skip: 0 is the first page",
            )
        as_order(self.order)
        # Clamped rather than refused: a console asking for more than a page gets a page.
        object.__setattr__(self, "limit", min(self.limit, MAX_LIMIT))
        q = (self.q or "").strip()
        object.__setattr__(self, "q", q or None)

    def pattern(self) -> str | None:
        """``q`` as a case-insensitive LIKE pattern, its wildcards taken literally."""
        if self.q is None:
            return None
        escaped = self.q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return f"%{escaped}%"


class Page(BaseModel, Generic[T]):
    """One page of a listing: its items, how many match in all, and where the next starts."""

    items: list[T]
    total: int
    limit: int
    offset: int
    next_offset: int | None


@dataclass(frozen=True)
class Listing:
    """A resource's sort whitelist: key -> column, the default key and its direction."""

    name: str
    sorts: Mapping[str, Any]  # key -> a column or mapped attribute
    default: str
    default_order: Order
    tiebreak: Any  # the primary key: ties never repeat or skip a row

    def order_by(self, request: PageRequest) -> list[ColumnElement[Any]]:
        key = request.sort or self.default
        if key not in self.sorts:
            allowed = ", ".join(sorted(self.sorts))
            raise InvalidPage(
                f"{self.name} cannot be sorted by {key!r}; the sort keys are: {allowed}",
                hint=f"use sort= one of {allowed}",
            )
        order = request.order or (self.default_order if request.sort is None else "asc")
        column = self.sorts[key]
        tiebreak = self.tiebreak
        if order == "desc":
            return [column.desc(), tiebreak.desc()]
        return [column.asc(), tiebreak.asc()]


def search(query: AnySelect, request: PageRequest, *columns: Any) -> AnySelect:
    """``query`` keeping rows where any of ``columns`` contains ``q`` (any case)."""
    pattern = request.pattern()
    if pattern is None:
        return query
    return query.where(or_(*(func.lower(c).like(pattern, escape="\\") for c in columns)))


def one_of(what: str, value: str | None, allowed: Sequence[str]) -> str | None:
    """``value`` when it is one of ``allowed`` (or None); InvalidPage naming them otherwise."""
    if value is None or value in allowed:
        return value
    names = ", ".join(allowed)
    raise InvalidPage(f"{what} {value!r} is not one of: {names}", hint=f"use one of {names}")


def fetch(
    session: Session,
    query: AnySelect,
    request: PageRequest,
    listing: Listing,
    to_items: Callable[[Sequence[Any]], list[T]],
) -> Page[T]:
    """Two statements: the page of ``query`` in the asked order, and the count of all matches.

    The page is cut on its keys alone, then joined back to its rows: the rows skipped on the
    way to a deep page are then narrow (key and sort column) whatever the table holds, where a
    wide row (a run's stored graph, about 15 KB) otherwise went through the sort 10,000 times
    to reach the last page."""
    order = listing.order_by(request)
    key = listing.tiebreak
    keys = (
        query.with_only_columns(key.label("page_key"), maintain_column_froms=True)
        .order_by(*order)
        .limit(request.limit)
        .offset(request.offset)
        .subquery("page_keys")
    )
    rows = session.execute(query.join(keys, key == keys.c.page_key).order_by(*order)).all()
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    total = int(total or 0)
    end = request.offset + len(rows)
    return Page[T](
        items=to_items(rows),
        total=total,
        limit=request.limit,
        offset=request.offset,
        next_offset=end if end < total else None,
    )


def collect(
    fetch: Callable[[PageRequest], Page[T]],
    *,
    q: str | None = None,
    sort: str | None = None,
    order: Order | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[T]:
    """Up to ``limit`` items from ``offset`` on (all when None), a page of ``MAX_LIMIT`` at a
    time: how the unpaged lists (CLI tables, the SDK's list methods) read a paged listing."""
    items: list[T] = []
    while True:
        want = MAX_LIMIT if limit is None else min(MAX_LIMIT, limit - len(items))
        page = fetch(PageRequest(q=q, sort=sort, order=order, limit=want, offset=offset))
        items += page.items
        if page.next_offset is None or not page.items:
            return items
        if limit is not None and len(items) >= limit:
            return items
        offset = page.next_offset
