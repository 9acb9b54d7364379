"""Search, sort and pagination of a listing's query string, and the page of rows it selects.

Kept in one place so that store-side listings (paged and sorted in SQL) can replace the
in-memory slicing without touching the pages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from cloche.errors import BadRequest

T = TypeVar("T")
PER_PAGE = 25
MAX_SEARCH = 200


@dataclass(frozen=True)
class Listing:
    """What a listing's query string asks for, checked."""

    search: str
    sort: str
    page: int


@dataclass(frozen=True)
class Page(Generic[T]):
    rows: list[T]
    listing: Listing
    total: int
    pages: int

    @property
    def has_previous(self) -> bool:
        return self.listing.page > 1

    @property
    def has_next(self) -> bool:
        return self.listing.page < self.pages


def parse_listing(query: Mapping[str, str], *, sorts: Sequence[str], default: str) -> Listing:
    """``?q=&sort=&page=`` checked: a bad value is a 400 that names the values allowed."""
    search = query.get("q", "").strip()
    if len(search) > MAX_SEARCH:
        raise BadRequest(f"the search is longer than {MAX_SEARCH} characters", hint="shorten it")
    sort = query.get("sort", "") or default
    if sort not in sorts:
        raise BadRequest(f"cannot sort by {sort!r}", hint=f"sort by one of: {', '.join(sorts)}")
    raw_page = query.get("page", "") or "1"
    if not raw_page.isdigit() or int(raw_page) < 1:
        raise BadRequest(f"page {raw_page!r} is not a page number", hint="pages count from 1")
    return Listing(search=search, sort=sort, page=int(raw_page))


def paginate(
    items: Sequence[T], listing: Listing, *, keys: Mapping[str, Callable[[T], Any]]
) -> Page[T]:
    """The rows of ``listing.page`` (the last page when past it), sorted by ``keys[sort]``
    ("-" first: descending)."""
    key = keys[listing.sort.removeprefix("-")]
    ordered = sorted(items, key=key, reverse=listing.sort.startswith("-"))
    pages = max(1, -(-len(ordered) // PER_PAGE))
    listing = replace(listing, page=min(listing.page, pages))  # past the end: the last page
    start = (listing.page - 1) * PER_PAGE
    return Page(
        rows=ordered[start : start + PER_PAGE], listing=listing, total=len(ordered), pages=pages
    )
