"""The alert rules: M of N, cooldown, acknowledgement, resolve and reopen, flapping."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloche.alerts.lifecycle import (
    AlertPolicy,
    Decision,
    OpenAlert,
    decide,
    previous_from_runs,
)
from cloche.errors import InvalidInput

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def run(
    policy: AlertPolicy,
    breached: set[str],
    *,
    previous: dict[str, list[bool]] | None = None,
    open_alerts: list[OpenAlert] | None = None,
    now: datetime = T0,
) -> Decision:
    return decide(
        policy,
        breached=breached,
        previous=previous or {},
        open_alerts=open_alerts or [],
        now=now,
    )


@dataclass
class Monitor:
    """What the service does around decide(): keep run history and open alerts, and notify.
    Every digest is assumed delivered."""

    policy: AlertPolicy
    runs: list[set[str]] = field(default_factory=list)
    alerts: dict[str, OpenAlert] = field(default_factory=dict)
    digests: list[Decision] = field(default_factory=list)

    def tick(self, breached: set[str], now: datetime) -> Decision:
        keys = breached | self.alerts.keys()
        previous = previous_from_runs(self.runs, keys, of_runs=self.policy.of_runs)
        decision = decide(
            self.policy,
            breached=breached,
            previous=previous,
            open_alerts=self.alerts.values(),
            now=now,
        )
        for key in decision.open:
            self.alerts[key] = OpenAlert(key, opened_at=now)
        for key in decision.resolve:
            del self.alerts[key]
        if decision.notify:
            self.digests.append(decision)
            for key in decision.notified:
                self.alerts[key] = replace(self.alerts[key], last_notified_at=now)
        self.runs.append(breached)
        return decision


# --- the default policy: 1 of 1, 6 h cooldown -------------------------------------------


def test_defaults() -> None:
    policy = AlertPolicy()
    assert (policy.min_breaches, policy.of_runs, policy.cooldown_s) == (1, 1, 6 * 3600)


def test_a_first_breach_opens_an_alert_and_notifies() -> None:
    d = run(AlertPolicy(), {"drift:tenure", "skew:spend"})
    assert d.open == ("drift:tenure", "skew:spend")
    assert (d.renotify, d.resolve, d.quiet, d.pending) == ((), (), (), ())
    assert d.notify and d.notified == ("drift:tenure", "skew:spend")


def test_nothing_breached_and_nothing_open_sends_nothing() -> None:
    d = run(AlertPolicy(), set())
    assert d == Decision() and not d.notify


def test_breached_keys_are_deduplicated() -> None:
    d = decide(AlertPolicy(), breached=["drift:a", "drift:a"], previous={}, open_alerts=[], now=T0)
    assert d.open == ("drift:a",)


# --- cooldown ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("since_notified", "expected"),
    [
        (timedelta(hours=6) - timedelta(microseconds=1), "quiet"),
        (timedelta(hours=6), "renotify"),  # the boundary itself re-notifies
        (timedelta(hours=7), "renotify"),
        (timedelta(0), "quiet"),
    ],
)
def test_cooldown_boundary(since_notified: timedelta, expected: str) -> None:
    alert = OpenAlert("drift:a", opened_at=T0 - 10 * HOUR, last_notified_at=T0 - since_notified)
    d = run(AlertPolicy(), {"drift:a"}, open_alerts=[alert])
    assert getattr(d, expected) == ("drift:a",)
    assert d.notify is (expected == "renotify")


def test_zero_cooldown_renotifies_every_run() -> None:
    alert = OpenAlert("drift:a", opened_at=T0, last_notified_at=T0)
    d = run(AlertPolicy(cooldown_s=0), {"drift:a"}, open_alerts=[alert])
    assert d.renotify == ("drift:a",)


def test_cooldown_counts_from_the_last_notification_not_the_opening() -> None:
    alert = OpenAlert("drift:a", opened_at=T0 - 30 * HOUR, last_notified_at=T0 - HOUR)
    assert run(AlertPolicy(), {"drift:a"}, open_alerts=[alert]).quiet == ("drift:a",)


def test_an_alert_never_notified_is_notified_at_the_next_breach() -> None:
    """Every delivery failed when it opened: the service leaves last_notified_at empty."""
    alert = OpenAlert("drift:a", opened_at=T0 - HOUR, last_notified_at=None)
    assert run(AlertPolicy(), {"drift:a"}, open_alerts=[alert]).renotify == ("drift:a",)


def test_naive_datetimes_are_utc() -> None:
    """SQLite hands datetimes back without a zone."""
    naive = (T0 - 7 * HOUR).replace(tzinfo=None)
    alert = OpenAlert("drift:a", opened_at=naive, last_notified_at=naive)
    assert run(AlertPolicy(), {"drift:a"}, open_alerts=[alert]).renotify == ("drift:a",)
    d = run(AlertPolicy(), {"drift:a"}, open_alerts=[alert], now=T0.replace(tzinfo=None))
    assert d.renotify == ("drift:a",)


# --- acknowledgement --------------------------------------------------------------------


def test_an_acked_alert_is_not_renotified_however_long_it_lasts() -> None:
    alert = OpenAlert("drift:a", opened_at=T0 - 99 * HOUR, last_notified_at=None, acked=True)
    d = run(AlertPolicy(cooldown_s=0), {"drift:a"}, open_alerts=[alert])
    assert d.quiet == ("drift:a",) and not d.notify


def test_an_acked_alert_still_resolves() -> None:
    alert = OpenAlert("drift:a", opened_at=T0 - HOUR, last_notified_at=T0 - HOUR, acked=True)
    d = run(AlertPolicy(), set(), open_alerts=[alert])
    assert d.resolve == ("drift:a",) and d.notify


def test_a_reopened_alert_is_not_acked_any_more() -> None:
    monitor = Monitor(AlertPolicy(cooldown_s=0))
    monitor.tick({"drift:a"}, T0)
    monitor.alerts["drift:a"] = replace(monitor.alerts["drift:a"], acked=True)
    assert monitor.tick({"drift:a"}, T0 + HOUR).quiet == ("drift:a",)
    assert monitor.tick(set(), T0 + 2 * HOUR).resolve == ("drift:a",)
    assert monitor.tick({"drift:a"}, T0 + 3 * HOUR).open == ("drift:a",)
    assert monitor.tick({"drift:a"}, T0 + 4 * HOUR).renotify == ("drift:a",)


# --- resolve and reopen -----------------------------------------------------------------


def test_an_open_alert_resolves_at_the_first_clean_run() -> None:
    alert = OpenAlert("drift:a", opened_at=T0 - HOUR, last_notified_at=T0 - HOUR)
    d = run(AlertPolicy(min_breaches=3, of_runs=5), {"drift:b"}, open_alerts=[alert])
    assert d.resolve == ("drift:a",)
    assert d.pending == ("drift:b",)
    assert d.notify and d.notified == ()


def test_resolve_then_reopen_notifies_again_despite_the_cooldown() -> None:
    monitor = Monitor(AlertPolicy())
    assert monitor.tick({"drift:a"}, T0).open == ("drift:a",)
    assert monitor.tick(set(), T0 + HOUR).resolve == ("drift:a",)
    reopened = monitor.tick({"drift:a"}, T0 + 2 * HOUR)
    assert reopened.open == ("drift:a",) and reopened.notify
    assert monitor.alerts["drift:a"].opened_at == T0 + 2 * HOUR
    assert len(monitor.digests) == 3


def test_each_key_has_its_own_alert() -> None:
    open_a = OpenAlert("drift:a", opened_at=T0 - HOUR, last_notified_at=T0 - HOUR)
    d = run(AlertPolicy(), {"drift:a", "drift:b"}, open_alerts=[open_a])
    assert (d.open, d.quiet) == (("drift:b",), ("drift:a",))
    assert d.still_open == ("drift:a", "drift:b")
    assert d.notified == ("drift:b",)


def test_duplicate_open_rows_of_a_key_are_decided_once() -> None:
    rows = [
        OpenAlert("drift:a", opened_at=T0 - 9 * HOUR, last_notified_at=T0 - 8 * HOUR),
        OpenAlert("drift:a", opened_at=T0 - 2 * HOUR, last_notified_at=T0 - HOUR),
    ]
    d = run(AlertPolicy(), {"drift:a"}, open_alerts=rows)
    # The latest notification wins: still inside the cooldown.
    assert d.quiet == ("drift:a",) and d.renotify == ()
    acked = [rows[0], replace(rows[1], last_notified_at=None, acked=True)]
    assert run(AlertPolicy(), {"drift:a"}, open_alerts=acked).quiet == ("drift:a",)


# --- M of N ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "opens"),
    [
        ([], False),  # 1 of 3
        ([False, False], False),  # 1 of 3
        ([True], True),  # 2 of 2 seen so far
        ([True, False], True),  # 2 of 3
        ([False, True], True),
        ([True, False, False], False),  # the oldest falls out of the window: 1 of 3
        ([True, True, False, True, False, False], False),
    ],
)
def test_two_of_three(previous: list[bool], opens: bool) -> None:
    d = run(AlertPolicy(min_breaches=2, of_runs=3), {"drift:a"}, previous={"drift:a": previous})
    assert d.open == (("drift:a",) if opens else ())
    assert d.pending == (() if opens else ("drift:a",))
    assert d.notify is opens


def test_m_of_n_counts_only_the_same_key() -> None:
    previous = {"drift:b": [True, True]}
    d = run(AlertPolicy(min_breaches=2, of_runs=3), {"drift:a"}, previous=previous)
    assert d.pending == ("drift:a",)


def test_a_clean_run_never_opens_whatever_the_history() -> None:
    d = run(AlertPolicy(min_breaches=1, of_runs=3), set(), previous={"drift:a": [True, True]})
    assert d == Decision()


def test_three_of_three_needs_three_consecutive_breaches() -> None:
    monitor = Monitor(AlertPolicy(min_breaches=3, of_runs=3))
    verdicts = []
    for i, breached in enumerate([True, True, False, True, True, True]):
        d = monitor.tick({"latency:p99"} if breached else set(), T0 + i * HOUR)
        verdicts.append(bool(d.open))
    assert verdicts == [False, False, False, False, False, True]


def test_flapping_is_damped_by_m_of_n() -> None:
    """A key that breaches every other run never opens with 2 of 2 ..."""
    monitor = Monitor(AlertPolicy(min_breaches=2, of_runs=2))
    for i in range(10):
        monitor.tick({"drift:a"} if i % 2 == 0 else set(), T0 + i * HOUR)
    assert monitor.digests == [] and monitor.alerts == {}


def test_flapping_with_two_of_three_opens_and_resolves_with_each_swing() -> None:
    """... but does with 2 of 3; every clean run resolves it, every breach reopens it."""
    monitor = Monitor(AlertPolicy(min_breaches=2, of_runs=3))
    seen = []
    for i in range(6):
        d = monitor.tick({"drift:a"} if i % 2 == 0 else set(), T0 + i * HOUR)
        seen.append("open" if d.open else "resolve" if d.resolve else "-")
    assert seen == ["-", "-", "open", "resolve", "open", "resolve"]


def test_a_long_breach_notifies_once_per_cooldown() -> None:
    monitor = Monitor(AlertPolicy(cooldown_s=6 * 3600))
    for i in range(25):  # hourly runs for a day
        monitor.tick({"drift:a"}, T0 + i * HOUR)
    opened = [d for d in monitor.digests if d.open]
    reminders = [d for d in monitor.digests if d.renotify]
    assert len(opened) == 1 and len(reminders) == 4  # at 6 h, 12 h, 18 h, 24 h


# --- the policy and the helpers ----------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_breaches": 0},
        {"of_runs": 0},
        {"min_breaches": 3, "of_runs": 2},
        {"cooldown_s": -1},
    ],
)
def test_a_policy_that_cannot_work_is_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(InvalidInput) as caught:
        AlertPolicy(**kwargs)
    assert caught.value.hint and "min_breaches <= of_runs" in caught.value.hint


def test_previous_from_runs_keeps_the_last_n_minus_one_runs() -> None:
    runs = [{"drift:a"}, set(), {"drift:a", "skew:b"}, {"skew:b"}]
    assert previous_from_runs(runs, ["drift:a", "skew:b"], of_runs=3) == {
        "drift:a": [True, False],
        "skew:b": [True, True],
    }
    assert previous_from_runs(runs, ["drift:a"], of_runs=1) == {"drift:a": []}


keys = st.sampled_from(["drift:a", "drift:b", "skew:c", "quality:missing_rate:d"])


@given(
    breached=st.sets(keys),
    open_keys=st.sets(keys),
    history=st.lists(st.booleans(), max_size=5),
    acked=st.booleans(),
    hours_since=st.integers(min_value=0, max_value=12),
    m=st.integers(min_value=1, max_value=3),
    extra=st.integers(min_value=0, max_value=2),
)
def test_every_key_gets_exactly_one_verdict(
    breached: set[str],
    open_keys: set[str],
    history: list[bool],
    acked: bool,
    hours_since: int,
    m: int,
    extra: int,
) -> None:
    alerts = [
        OpenAlert(
            k, opened_at=T0 - 20 * HOUR, last_notified_at=T0 - hours_since * HOUR, acked=acked
        )
        for k in open_keys
    ]
    d = run(
        AlertPolicy(min_breaches=m, of_runs=m + extra),
        breached,
        previous={k: history for k in breached},
        open_alerts=alerts,
    )
    buckets = [d.open, d.renotify, d.resolve, d.quiet, d.pending]
    flat = [k for bucket in buckets for k in bucket]
    assert sorted(flat) == sorted(breached | open_keys)
    assert all(list(bucket) == sorted(bucket) for bucket in buckets)
    assert set(d.resolve) == open_keys - breached
    assert not set(d.open) & open_keys
    assert d.notify is bool(d.open or d.renotify or d.resolve)
