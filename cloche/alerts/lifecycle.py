"""When an alert opens, is re-notified, resolves or stays quiet: pure rules, no database.

The monitoring service calls :func:`decide` after each evaluated run (status ok or breached)
with the keys this run breached, the same keys' results in the previous runs, and the alerts
that are open now; it then writes rows and sends at most one digest (``Decision.notify``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cloche.errors import InvalidInput

DEFAULT_COOLDOWN_S = 6 * 3600


@dataclass(frozen=True)
class AlertPolicy:
    """Open an alert when a key breached in ``min_breaches`` of the last ``of_runs`` runs
    (this one included); remind at most once per ``cooldown_s`` while it stays breached."""

    min_breaches: int = 1
    of_runs: int = 1
    cooldown_s: float = DEFAULT_COOLDOWN_S

    def __post_init__(self) -> None:
        hint = "min_breaches and of_runs are at least 1, min_breaches <= of_runs, cooldown >= 0"
        if self.min_breaches < 1 or self.of_runs < 1:
            raise InvalidInput("min_breaches and of_runs must be at least 1", hint=hint)
        if self.min_breaches > self.of_runs:
            # Otherwise no run could ever satisfy the policy: the alert would never open.
            raise InvalidInput(
                f"min_breaches {self.min_breaches} is more than of_runs {self.of_runs}", hint=hint
            )
        if self.cooldown_s < 0:
            raise InvalidInput(f"cooldown {self.cooldown_s}s is negative", hint=hint)

    @property
    def cooldown(self) -> timedelta:
        return timedelta(seconds=self.cooldown_s)


@dataclass(frozen=True)
class OpenAlert:
    """What the rules need to know of an open alert row."""

    key: str
    opened_at: datetime
    last_notified_at: datetime | None = None  # None: no notification went out yet
    acked: bool = False


@dataclass(frozen=True)
class Decision:
    """Per key, exactly one verdict; every tuple is sorted, so the result is deterministic.

    - ``open``: breached often enough and not open: open an alert and announce it.
    - ``renotify``: open, still breached, not acknowledged, and the cooldown has passed.
    - ``resolve``: open and not breached in this run.
    - ``quiet``: open and still breached, but acknowledged or inside the cooldown.
    - ``pending``: breached in this run, not open, fewer than min_breaches of of_runs so far.
    """

    open: tuple[str, ...] = ()
    renotify: tuple[str, ...] = ()
    resolve: tuple[str, ...] = ()
    quiet: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()

    @property
    def notify(self) -> bool:
        """Whether this run sends its digest: something opened, re-notified or resolved."""
        return bool(self.open or self.renotify or self.resolve)

    @property
    def notified(self) -> tuple[str, ...]:
        """Keys whose ``last_notified_at`` becomes the run time once the digest goes out."""
        return tuple(sorted((*self.open, *self.renotify)))

    @property
    def still_open(self) -> tuple[str, ...]:
        """Keys with an open alert after this run: opened, re-notified or quiet."""
        return tuple(sorted((*self.open, *self.renotify, *self.quiet)))


def decide(
    policy: AlertPolicy,
    *,
    breached: Collection[str],
    previous: Mapping[str, Sequence[bool]],
    open_alerts: Iterable[OpenAlert],
    now: datetime,
) -> Decision:
    """The verdict for every key this run breached or that has an open alert.

    ``previous`` holds, per key, whether each EARLIER evaluated run breached it, newest last;
    this run is never in it (it comes from ``breached``). Only the last ``of_runs - 1``
    entries count; a missing key means no earlier breach. Naive datetimes are taken as UTC
    (SQLite hands them back without a zone).
    """
    now = _utc(now)
    current = set(breached)
    alerts = _by_key(open_alerts)
    verdicts: dict[str, list[str]] = {
        name: [] for name in ("open", "renotify", "resolve", "quiet", "pending")
    }
    for key in sorted(current | alerts.keys()):
        alert = alerts.get(key)
        if alert is None:
            verdict = "open" if _often_enough(policy, previous.get(key, ())) else "pending"
        elif key not in current:
            verdict = "resolve"
        elif _reminder_due(policy, alert, now):
            verdict = "renotify"
        else:
            verdict = "quiet"
        verdicts[verdict].append(key)
    return Decision(**{name: tuple(keys) for name, keys in verdicts.items()})


def _often_enough(policy: AlertPolicy, earlier: Sequence[bool]) -> bool:
    """This run breached; with the earlier runs inside the window, is that min_breaches?"""
    window = list(earlier)[-(policy.of_runs - 1) :] if policy.of_runs > 1 else []
    return 1 + sum(bool(b) for b in window) >= policy.min_breaches


def _reminder_due(policy: AlertPolicy, alert: OpenAlert, now: datetime) -> bool:
    if alert.acked:
        return False  # acknowledged: someone is on it; resolve or a reopen speaks next
    if alert.last_notified_at is None:
        return True  # never announced (every delivery failed): try again now
    return now - _utc(alert.last_notified_at) >= policy.cooldown


def _by_key(open_alerts: Iterable[OpenAlert]) -> dict[str, OpenAlert]:
    """One alert per key. Duplicate rows (a race between replicas) fold conservatively: the
    latest notification and any acknowledgement win, so a key is never notified twice."""
    rows: dict[str, list[OpenAlert]] = {}
    for alert in open_alerts:
        rows.setdefault(alert.key, []).append(alert)
    return {key: group[0] if len(group) == 1 else _fold(group) for key, group in rows.items()}


def _fold(group: list[OpenAlert]) -> OpenAlert:
    notified = [_utc(r.last_notified_at) for r in group if r.last_notified_at is not None]
    return OpenAlert(
        key=group[0].key,
        opened_at=min(_utc(r.opened_at) for r in group),
        last_notified_at=max(notified) if notified else None,
        acked=any(r.acked for r in group),
    )


def previous_from_runs(
    runs: Sequence[Collection[str]], keys: Iterable[str], *, of_runs: int
) -> dict[str, list[bool]]:
    """``previous`` for :func:`decide` from earlier runs' breach lists (oldest first, this
    run excluded): the last ``of_runs - 1`` results per key."""
    recent = list(runs)[-(of_runs - 1) :] if of_runs > 1 else []
    return {key: [key in run for run in recent] for key in keys}


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
