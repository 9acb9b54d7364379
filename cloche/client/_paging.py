"""The SDK's list methods over paged listings, the same in both transports.

A list method takes the listing's own filters plus ``q``, ``sort``, ``order``, ``limit`` and
``offset`` and returns a plain list, as before paging: it asks for pages of at most
``MAX_LIMIT`` rows until it has ``limit`` items (all of them when ``limit`` is None). The HTTP
form reads each page's place from the response headers (api/paging.py). Rows added while the
pages are read may shift later pages by a row; a caller that needs one consistent view asks
for one page.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from pydantic import BaseModel

from cloche.client._http import HttpTransport
from cloche.store.paging import Page, PageRequest, collect

__all__ = ["collect", "http_page"]

M = TypeVar("M", bound=BaseModel)


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
