"""The segmented LRU's order on its own: promotion on a second use, the protected segment's
bound, and eviction order (probation first)."""

from __future__ import annotations

from cloche.serving.slru import SegmentedLRU


def test_a_key_is_promoted_on_its_second_use_not_its_first() -> None:
    order = SegmentedLRU(protected_bytes=100)
    order.add("a", 10, used=False)
    order.use("a")
    assert not order.protected("a")
    order.use("a")
    assert order.protected("a")


def test_a_key_loaded_for_a_batch_is_promoted_on_its_next_use() -> None:
    order = SegmentedLRU(protected_bytes=100)
    order.add("a", 10, used=True)
    order.use("a")
    assert order.protected("a")


def test_victims_are_probation_least_recent_first_then_protected() -> None:
    order = SegmentedLRU(protected_bytes=100)
    for key in "abcd":
        order.add(key, 10, used=True)
    order.use("b")  # protected
    order.use("a")  # protected, more recently than b
    assert list(order.victims()) == ["c", "d", "b", "a"]


def test_a_full_protected_segment_demotes_its_least_recent_key_to_the_top_of_probation() -> None:
    order = SegmentedLRU(protected_bytes=20)
    for key in "abcx":
        order.add(key, 10, used=True)
    order.use("a")
    order.use("b")
    order.use("c")  # 30 bytes > 20: a goes back to probation, as its most recent key
    assert not order.protected("a") and order.protected("b") and order.protected("c")
    assert list(order.victims()) == ["x", "a", "b", "c"]
    order.use("a")  # a second chance: used again, it is promoted again (and b demoted)
    assert order.protected("a") and not order.protected("b")


def test_a_model_larger_than_the_protected_bound_is_still_protected_alone() -> None:
    order = SegmentedLRU(protected_bytes=5)
    order.add("big", 10, used=True)
    order.use("big")
    assert order.protected("big")


def test_removed_keys_leave_both_segments_and_later_uses_are_ignored() -> None:
    order = SegmentedLRU(protected_bytes=100)
    order.add("a", 10, used=True)
    order.add("b", 10, used=True)
    order.use("a")
    order.remove("a")
    order.remove("b")
    order.use("a")  # a batch finishing after its model was dropped
    assert list(order.victims()) == []
    order.add("a", 10, used=False)  # loaded again: on probation, its count starts over
    order.use("a")
    assert not order.protected("a")


def test_without_a_bound_nothing_is_demoted() -> None:
    order = SegmentedLRU(protected_bytes=None)
    for key in "abc":
        order.add(key, 10**12, used=True)
        order.use(key)
    assert all(order.protected(k) for k in "abc")
