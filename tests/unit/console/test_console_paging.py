"""Listing query strings: bad values are a 400 naming what is allowed; pages clamp at the end."""

from __future__ import annotations

import pytest

from cloche.console.paging import PER_PAGE, Listing, paginate, parse_listing
from cloche.errors import BadRequest

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
