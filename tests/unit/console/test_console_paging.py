"""Listing query strings: bad values are a 400 naming what is allowed; pages clamp at the end."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cloche.console.paging import PER_PAGE, Listing, fetch_page, paginate, parse_listing
from cloche.errors import BadRequest
from cloche.store.paging import Page, PageRequest

SORTS = ("name", "-name")
KEYS = {"name": lambda n: n}


def test_defaults_are_the_first_page_in_the_default_order() -> None:
    assert parse_listing({}, sorts=SORTS, default="name") == Listing("", "name", 1)


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ({"page": "-1"}, "not a page number"),
        ({"page": "0"}, "not a page number"),
        ({"page": "two"}, "not a page number"),
        ({"page": "1e3"}, "not a page number"),
        ({"sort": "evil"}, "sort by one of: name, -name"),
        ({"sort": "name; drop table"}, "sort by one of"),
        ({"q": "x" * 201}, "longer than 200"),
    ],
)
def test_a_bad_listing_query_is_a_bad_request_that_says_what_is_allowed(
    query: dict[str, str], says: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_listing(query, sorts=SORTS, default="name")
    assert says in f"{caught.value.message} {caught.value.hint}"


def test_pages_slice_in_order_and_a_page_past_the_end_shows_the_last() -> None:
    names = [f"m{i:03d}" for i in range(PER_PAGE * 2 + 3)]
    first = paginate(names, Listing("", "-name", 1), keys=KEYS)
    assert first.rows[0] == names[-1] and first.pages == 3 and first.has_next
    last = paginate(names, Listing("", "name", 99), keys=KEYS)
    assert last.listing.page == 3 and last.rows == names[-3:] and not last.has_next


def test_an_empty_listing_has_one_empty_page() -> None:
    page = paginate([], Listing("", "name", 1), keys=KEYS)
    assert (page.rows, page.pages, page.has_previous, page.has_next) == ([], 1, False, False)


def _listing_of(names: list[str], asked: list[PageRequest]) -> Callable[[PageRequest], Page[str]]:
    """A paged listing over ``names`` as a service gives one, recording what it was asked."""

    def fetch(request: PageRequest) -> Page[str]:
        asked.append(request)
        ordered = sorted(names, reverse=request.order == "desc")
        items = ordered[request.offset : request.offset + request.limit]
        return Page(
            items=items,
            total=len(names),
            limit=request.limit,
            offset=request.offset,
            next_offset=None,
        )

    return fetch


def test_a_store_page_asks_the_service_for_one_page_in_its_own_sort_key() -> None:
    names = [f"m{i:03d}" for i in range(PER_PAGE * 2 + 3)]
    asked: list[PageRequest] = []
    page = fetch_page(Listing("m0", "-name", 2), _listing_of(names, asked), sorts={"name": "nm"})
    assert asked == [PageRequest(q="m0", sort="nm", order="desc", limit=PER_PAGE, offset=PER_PAGE)]
    assert page.rows == sorted(names, reverse=True)[PER_PAGE : 2 * PER_PAGE] and page.pages == 3


def test_a_store_page_past_the_end_shows_the_last() -> None:
    names = [f"m{i:03d}" for i in range(PER_PAGE + 1)]
    asked: list[PageRequest] = []
    page = fetch_page(Listing("", "name", 9), _listing_of(names, asked), sorts={"name": "name"})
    assert page.listing.page == 2 and page.rows == names[-1:] and len(asked) == 2
