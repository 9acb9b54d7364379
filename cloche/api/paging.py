"""Paging over REST: the query parameters every list route takes, and the headers it answers.

The body of a list route stays the JSON array it always was (clients of /api/v1 keep working);
where the page sits in the whole listing goes in headers, as GitHub's and Stripe-like APIs do:
``X-Total-Count``, ``X-Next-Offset`` (absent on the last page) and a ``Link: <...>; rel="next"``.
Bad values are the service layer's ``InvalidPage`` (400, naming the allowed sort keys).
"""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import Depends, Query, Request, Response

from cloche.store.paging import DEFAULT_LIMIT, MAX_LIMIT, Page, PageRequest, as_order

T = TypeVar("T")


def page_request(
    q: Annotated[str | None, Query(description="search text (any case)", max_length=200)] = None,
    sort: Annotated[
        str | None, Query(description="a sort key of this listing (a 400 names them)")
    ] = None,
    # A plain string, so a wrong one is the same 400 invalid_page as a wrong sort key.
    order: Annotated[str | None, Query(description="asc or desc")] = None,
    limit: Annotated[
        int, Query(description=f"rows per page, 1-{MAX_LIMIT} (more is clamped)")
    ] = DEFAULT_LIMIT,
    offset: Annotated[int, Query(description="rows to skip; X-Next-Offset gives the next")] = 0,
) -> PageRequest:
    return PageRequest(q=q, sort=sort, order=as_order(order), limit=limit, offset=offset)


PageParams = Annotated[PageRequest, Depends(page_request)]


def items(page: Page[T], request: Request, response: Response) -> list[T]:
    """The page's items as the body; its place in the listing in the headers."""
    response.headers["X-Total-Count"] = str(page.total)
    if page.next_offset is not None:
        response.headers["X-Next-Offset"] = str(page.next_offset)
        url = request.url.include_query_params(offset=page.next_offset, limit=page.limit)
        response.headers["Link"] = f'<{url}>; rel="next"'
    return page.items
