"""Search, sort and pagination of a listing's query string, and the page of rows it selects.

``fetch_page`` asks a service's paged listing (sorted and sliced in SQL: one page of 10,000 runs
costs the same as one of 10); ``paginate`` slices a list already in memory, for listings that
have no paged service function yet.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from cloche.errors import BadRequest
from cloche.store.paging import Order, PageRequest
from cloche.store.paging import Page as StorePage

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


def fetch_page(
    listing: Listing, fetch: Callable[[PageRequest], StorePage[T]], *, sorts: Mapping[str, str]
) -> Page[T]:
    """``listing``'s page from a service's paged listing; ``sorts`` maps the console's sort
    names (without "-") to the service's sort keys. Past the end: the last page."""
    key = sorts[listing.sort.removeprefix("-")]
    order: Order = "desc" if listing.sort.startswith("-") else "asc"

    def ask(number: int) -> StorePage[T]:
        offset = (number - 1) * PER_PAGE
        return fetch(
            PageRequest(
                q=listing.search or None, sort=key, order=order, limit=PER_PAGE, offset=offset
            )
        )

    found = ask(listing.page)
    pages = max(1, -(-found.total // PER_PAGE))
    if listing.page > pages:
        listing = replace(listing, page=pages)
        found = ask(pages)
    return Page(rows=found.items, listing=listing, total=found.total, pages=pages)
