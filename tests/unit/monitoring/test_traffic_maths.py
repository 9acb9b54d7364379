"""Counter samples into per-interval counts, restarts, and bucket-interpolated quantiles."""

from __future__ import annotations

import pytest

from cloche.monitoring.traffic_maths import (
    Counts,
    bucketed_increases,
    histogram_quantile,
    increase,
    is_reset,
)

BOUNDS = (0.01, 0.1, 1.0)


def c(ok: int, client: int = 0, server: int = 0, latency: tuple[int, ...] = ()) -> Counts:
    return Counts(ok, client, server, latency)


def test_increase_between_two_samples_is_their_difference() -> None:
    got = increase(c(10, 2, 1, (5, 5, 3, 0)), c(15, 3, 1, (8, 6, 4, 0)))
    assert got == c(5, 1, 0, (3, 1, 1, 0))
    assert got.requests == 6


def test_a_counter_that_went_down_is_a_restart_counted_from_zero() -> None:
    before, after = c(100, 5, 2, (50, 50, 7, 0)), c(4, 0, 1, (5, 0, 0, 0))
    assert is_reset(before, after)
    assert increase(before, after) == after  # never negative, never the old counts again


def test_a_drop_in_one_latency_bucket_alone_is_a_restart() -> None:
    assert is_reset(c(10, latency=(5, 5)), c(12, latency=(7, 4)))


def test_a_new_bucket_layout_is_counted_anew() -> None:
    assert is_reset(c(10, latency=(5, 5)), c(12, latency=(5, 5, 2)))


def test_increases_go_to_the_interval_ending_nearest_the_later_sample() -> None:
    samples = [(99.9, c(0)), (110.2, c(4)), (119.8, c(10)), (130.1, c(10))]
    got = bucketed_increases(samples, step=10, first=100, last=130)
    assert got == {110: c(4), 120: c(6), 130: c(0)}


def test_the_first_sample_is_only_a_starting_point() -> None:
    got = bucketed_increases([(100, c(50)), (110, c(60))], step=10, first=100, last=110)
    assert got == {110: c(10)}  # the 50 counted before the first sample belong to no interval


def test_a_restart_between_samples_gives_no_negative_rate() -> None:
    samples = [(100, c(1000)), (110, c(1010)), (120, c(3)), (130, c(8))]
    got = bucketed_increases(samples, step=10, first=100, last=130)
    assert [got[t].requests for t in (110, 120, 130)] == [10, 3, 5]


def test_intervals_outside_the_window_are_left_out() -> None:
    got = bucketed_increases([(80, c(0)), (90, c(1)), (100, c(3))], step=10, first=100, last=100)
    assert got == {100: c(2)}


def test_samples_need_not_come_in_order() -> None:
    got = bucketed_increases([(110, c(7)), (100, c(2))], step=10, first=100, last=110)
    assert got == {110: c(5)}


def test_counts_add_up_across_servers() -> None:
    assert c(1, 2, 3, (1, 1)) + c(10, 20, 30, (2, 3)) == c(11, 22, 33, (3, 4))
    assert c(1) + c(1, latency=(1, 0)) == c(2, latency=(1, 0))


def test_quantile_interpolates_inside_its_bucket() -> None:
    # 10 in (0, 0.01], 10 in (0.01, 0.1]: the median is the top of the first bucket,
    # p75 halfway through the second.
    assert histogram_quantile(0.5, (10, 10, 0, 0), BOUNDS) == pytest.approx(0.01)
    assert histogram_quantile(0.75, (10, 10, 0, 0), BOUNDS) == pytest.approx(0.055)


def test_first_bucket_interpolates_from_zero() -> None:
    assert histogram_quantile(0.5, (4, 0, 0, 0), BOUNDS) == pytest.approx(0.005)


def test_empty_buckets_below_the_rank_are_skipped() -> None:
    assert histogram_quantile(0.99, (0, 0, 1, 0), BOUNDS) == pytest.approx(0.1 + 0.9 * 0.99)


def test_quantile_in_the_open_top_bucket_is_the_highest_bound() -> None:
    assert histogram_quantile(0.99, (1, 0, 0, 99), BOUNDS) == 1.0


def test_no_observations_no_quantile() -> None:
    assert histogram_quantile(0.5, (0, 0, 0, 0), BOUNDS) is None
