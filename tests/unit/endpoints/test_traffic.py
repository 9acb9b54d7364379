import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloche.endpoints.traffic import check_split_total, parse_split, rescale
from cloche.errors import InvalidInput


def test_rescale_keeps_proportions() -> None:
    assert rescale({1: 90, 2: 10}, 50) == {1: 45, 2: 5}
    assert rescale({1: 100}, 10) == {1: 10}


def test_rescale_shares_all_zero_weights_equally() -> None:
    assert rescale({1: 0, 2: 0, 3: 0}, 100) == {1: 34, 2: 33, 3: 33}


@given(st.dictionaries(st.integers(0, 50), st.integers(0, 100), min_size=1), st.integers(0, 100))
def test_rescale_always_sums_to_the_total(weights: dict[int, int], total: int) -> None:
    out = rescale(weights, total)
    assert sum(out.values()) == total and set(out) == set(weights)
    assert all(v >= 0 for v in out.values())


def test_parse_split_reads_refs_and_bare_versions() -> None:
    assert parse_split(["churn:3=90", "4=10"]) == {"churn:3": 90, "4": 10}


@pytest.mark.parametrize("item", ["churn:3", "=10", "churn:3=x", "churn:3=-5", "churn:3=9.5"])
def test_parse_split_says_how_to_write_a_share(item: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_split([item])
    assert "churn:3=90" in (info.value.hint or "")


def test_split_must_sum_to_100_and_the_error_shows_the_sum() -> None:
    with pytest.raises(InvalidInput, match=r"90 \(a:1\) \+ 20 \(a:2\) = 110"):
        check_split_total({"a:1": 90, "a:2": 20})
