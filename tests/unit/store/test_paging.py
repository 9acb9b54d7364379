"""store/paging.py: what a page request accepts, and the errors that name what to send."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table

from cloche.errors import BadRequest, InvalidPage
from cloche.store.paging import MAX_LIMIT, Listing, PageRequest, one_of

_things = Table("things", MetaData(), Column("id", Integer), Column("name", String))
THINGS = Listing(
    name="things",
    sorts={"name": _things.c.name, "id": _things.c.id},
    default="name",
    default_order="asc",
    tiebreak=_things.c.id,
)


def test_defaults_are_the_first_page_of_fifty() -> None:
    request = PageRequest()
    assert (request.limit, request.offset, request.q, request.sort) == (50, 0, None, None)


def test_a_limit_above_the_ceiling_is_clamped() -> None:
    assert PageRequest(limit=10_000).limit == MAX_LIMIT


@pytest.mark.parametrize("limit", [0, -1, True, 2.5, "10"])
def test_a_limit_below_one_or_not_a_whole_number_is_refused(limit: Any) -> None:
    with pytest.raises(InvalidPage, match="limit"):
        PageRequest(limit=limit)


@pytest.mark.parametrize("offset", [-1, -100, 1.5, None])
def test_a_negative_or_fractional_offset_is_refused(offset: Any) -> None:
    with pytest.raises(InvalidPage, match="offset"):
        PageRequest(offset=offset)


@pytest.mark.parametrize("order", ["up", "DESC", ""])
def test_an_order_other_than_asc_or_desc_is_refused(order: Any) -> None:
    with pytest.raises(InvalidPage, match="asc or desc"):
        PageRequest(order=order)


def test_an_unknown_sort_key_is_refused_naming_the_allowed_ones() -> None:
    with pytest.raises(InvalidPage) as caught:
        THINGS.order_by(PageRequest(sort="colour"))
    assert "'colour'" in caught.value.message and "id, name" in caught.value.message


def test_invalid_page_is_a_400() -> None:
    assert issubclass(InvalidPage, BadRequest) and InvalidPage.http_status == 400


def test_blank_search_text_means_no_search() -> None:
    assert PageRequest(q="   ").q is None and PageRequest(q="   ").pattern() is None


def test_search_wildcards_are_taken_literally_and_case_folded() -> None:
    assert PageRequest(q="A_b%").pattern() == "%a\\_b\\%%"


def test_default_order_applies_only_to_the_default_sort() -> None:
    default = THINGS.order_by(PageRequest())
    by_id = THINGS.order_by(PageRequest(sort="id"))
    newest = THINGS.order_by(PageRequest(sort="id", order="desc"))
    assert [str(c) for c in default] == ["things.name ASC", "things.id ASC"]
    assert [str(c) for c in by_id] == ["things.id ASC", "things.id ASC"]
    assert [str(c) for c in newest] == ["things.id DESC", "things.id DESC"]


def test_a_filter_value_outside_its_choices_names_them() -> None:
    assert one_of("state", None, ("open", "resolved")) is None
    with pytest.raises(InvalidPage, match="open, resolved"):
        one_of("state", "closed", ("open", "resolved"))
