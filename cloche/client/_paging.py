"""The SDK's list methods over paged listings, the same in both transports.

A list method takes the listing's own filters plus ``q``, ``sort``, ``order``, ``limit`` and
``offset`` and returns a plain list, as before paging: it asks for pages of at most
``MAX_LIMIT`` rows until it has ``limit`` items (all of them when ``limit`` is None). The HTTP
form reads each page's place from the response headers (api/paging.py). Rows added while the
pages are read may shift later pages by a row; a caller that needs one consistent view asks
for one page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from pydantic import BaseModel

from cloche.client._http import HttpTransport
from cloche.store.paging import MAX_LIMIT, Order, Page, PageRequest

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


def collect(
    fetch: Callable[[PageRequest], Page[T]],
    *,
    q: str | None,
    sort: str | None,
    order: Order | None,
    limit: int | None,
    offset: int,
) -> list[T]:
    """Up to ``limit`` items from ``offset`` on, a page of ``MAX_LIMIT`` at a time."""
    items: list[T] = []
    while True:
        want = MAX_LIMIT if limit is None else min(MAX_LIMIT, limit - len(items))
        # Built here, so a bad limit or offset is refused alike by both transports.
        page = fetch(PageRequest(q=q, sort=sort, order=order, limit=want, offset=offset))
        items += page.items
        if page.next_offset is None or not page.items:
            return items
        if limit is not None and len(items) >= limit:
            return items
        offset = page.next_offset


def http_page(
    transport: HttpTransport,
    path: str,
    request: PageRequest,
    model: type[M],
    filters: Iterable[tuple[str, Any]] = (),
) -> Page[M]:
    """One page of a REST list route: its JSON array, and its place from the headers."""
    asked = [
        (k, v) for k, v in (("q", request.q), ("sort", request.sort), ("order", request.order)) if v
    ]
    params = [*((k, v) for k, v in filters if v), *asked]
    params += [("limit", request.limit), ("offset", request.offset)]
    response = transport.request("GET", path, params=params)
    items = [model.model_validate(item) for item in response.json()]
    following = response.headers.get("X-Next-Offset")
    return Page[M](
        items=items,
        total=int(response.headers.get("X-Total-Count", len(items))),
        limit=request.limit,
        offset=request.offset,
        next_offset=int(following) if following else None,
    )
