"""The one message a monitor run sends: every breached key with its value and threshold, and
the keys that resolved. One run gives one message, never one per feature, so a bad deploy
that moves twenty features pages once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cloche.alerts.lifecycle import Decision

# A check's prefix in a key -> how the headline counts it: (one, many, what happened).
_CHECK_WORDS: dict[str, tuple[str, str, str]] = {
    "skew": ("feature", "features", "skewed from the baseline"),
    "drift": ("feature", "features", "drifted"),
    "quality": ("data-quality check", "data-quality checks", "failed"),
    "performance": ("performance metric", "performance metrics", "breached"),
    "latency": ("latency threshold", "latency thresholds", "exceeded"),
    "health": ("health check", "health checks", "failed"),
}

METRIC_NAMES = {
    "js": "Jensen-Shannon divergence",
    "psi": "population stability index",
    "ks": "Kolmogorov-Smirnov statistic",
    "wasserstein": "Wasserstein distance",
    "linf": "L-infinity distance",
}

QUALITY_DEFINITIONS = {
    "missing_rate": "share of rows with the feature missing",
    "mismatch_rate": "share of rows with a value of the wrong type",
    "out_of_range_rate": "share of rows outside the baseline's range",
    "unseen_category_rate": "share of rows with a category the baseline never saw",
}

HEALTH_DEFINITIONS = {
    "p50_ms": "median latency, ms",
    "p95_ms": "95th percentile latency, ms",
    "p99_ms": "99th percentile latency, ms",
    "error_rate": "share of requests answered with a 5xx status",
    "requests_per_s": "requests per second (breached when below the threshold)",
}

MAX_LINES_PER_SECTION = 50  # a message stays readable in chat; to_dict() keeps every breach
MAX_SUBJECT = 200


@dataclass(frozen=True)
class Breach:
    """One breached key of a run, e.g. ``drift:spend`` or ``quality:missing_rate:age``."""

    key: str
    value: float | None = None
    threshold: float | None = None
    definition: str = ""  # how value is measured, e.g. "Jensen-Shannon divergence, log base 2"
    name: str = ""  # the feature or metric; default: the key's last part
    new: bool = True  # False: the alert was already open (a reminder or an ongoing breach)

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.key.rsplit(":", 1)[-1])

    @property
    def check(self) -> str:
        """The family the key belongs to: skew, drift, quality, performance, latency, health."""
        return self.key.split(":", 1)[0]

    def line(self) -> str:
        text = f"{self.key} = {_num(self.value)}, threshold {_num(self.threshold)}"
        return f"{text} ({self.definition})" if self.definition else text

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "check": self.check,
            "name": self.name,
            "value": self.value,
            "threshold": self.threshold,
            "definition": self.definition,
            "new": self.new,
        }


@dataclass(frozen=True)
class AlertMessage:
    """What one monitor run announces; ``text`` is what chat webhooks and email show."""

    monitor: str
    endpoint: str
    run_at: datetime
    window_start: datetime
    window_end: datetime
    breaches: tuple[Breach, ...] = ()
    resolved: tuple[str, ...] = ()

    @property
    def window(self) -> timedelta:
        return self.window_end - self.window_start

    @property
    def headline(self) -> str:
        """E.g. ``cloche: 2 features drifted on endpoint churn (monitor churn-drift)``."""
        return f"cloche: {self._summary(f'endpoint {self.endpoint}')}"

    @property
    def subject(self) -> str:
        return _one_line(f"[cloche] {self._summary(self.endpoint)}")[:MAX_SUBJECT]

    @property
    def text(self) -> str:
        lines = [_one_line(self.headline), self._when(), ""]
        lines += _section("New", [b.line() for b in self.breaches if b.new])
        lines += _section("Still breached", [b.line() for b in self.breaches if not b.new])
        lines += _section("Resolved", list(self.resolved))
        lines.append(
            f"Details: cloche monitors show {self.monitor}; "
            f"cloche alerts list --monitor {self.monitor} --state open"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor,
            "endpoint": self.endpoint,
            "headline": self.headline,
            "run_at": _utc(self.run_at).isoformat(),
            "window_start": _utc(self.window_start).isoformat(),
            "window_end": _utc(self.window_end).isoformat(),
            "breaches": [b.to_dict() for b in self.breaches],
            "resolved": list(self.resolved),
        }

    def _summary(self, where: str) -> str:
        """What happened, where; resolved alerts come last as an afterthought."""
        parts = [_count(check, n) for check, n in _counts(self.breaches)]
        n = len(self.resolved)
        if not parts:
            what = f"{n} alert{'s' if n != 1 else ''} resolved" if n else "nothing breached"
            return f"{what} on {where} (monitor {self.monitor})"
        resolved = f"; {n} resolved" if n else ""
        return f"{', '.join(parts)} on {where} (monitor {self.monitor}){resolved}"

    def _when(self) -> str:
        start, end = _utc(self.window_start), _utc(self.window_end)
        return (
            f"Run at {_stamp(self.run_at)} over {_stamp(start)} to {_stamp(end)} "
            f"(window {_duration(end - start)})."
        )


def build_message(
    decision: Decision,
    details: Mapping[str, Breach],
    *,
    monitor: str,
    endpoint: str,
    run_at: datetime,
    window_start: datetime,
    window_end: datetime,
) -> AlertMessage | None:
    """The run's digest, or None when the decision sends nothing.

    It lists every alert open after the run (new first, then reminders and quiet ones, so the
    reader sees the whole picture) and what resolved; keys still pending (fewer than
    min_breaches) are left out, they are not alerts yet. ``details`` maps keys to their
    measured values; a key without one is listed with its value unknown.
    """
    if not decision.notify:
        return None
    new = set(decision.open)
    breaches = tuple(
        dataclasses.replace(details.get(key) or Breach(key), new=key in new)
        for key in sorted(decision.still_open, key=lambda k: (k not in new, k))
    )
    return AlertMessage(
        monitor=monitor,
        endpoint=endpoint,
        run_at=run_at,
        window_start=window_start,
        window_end=window_end,
        breaches=breaches,
        resolved=tuple(decision.resolve),
    )


def breach_from_results(key: str, results: Mapping[str, Any]) -> Breach:
    """A breach's value, threshold and definition, found in a monitor run's ``results``:
    ``features.<f>.<skew|drift>``, ``features.<f>.quality.<rule>``, ``health.<metric>``,
    otherwise ``<check>.<name>``. Missing parts leave the value unknown rather than fail:
    the digest must still go out."""
    parts = key.split(":")
    verdict, definition = _lookup(parts, results)
    return Breach(
        key=key,
        value=_float(verdict.get("value")),
        threshold=_float(verdict.get("threshold")),
        definition=str(verdict.get("definition") or definition),
    )


def breaches_from_results(keys: Iterable[str], results: Mapping[str, Any]) -> dict[str, Breach]:
    return {key: breach_from_results(key, results) for key in keys}


def _lookup(parts: list[str], results: Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
    features = _map(results.get("features"))
    check, name = parts[0], parts[-1]
    if check in ("skew", "drift") and len(parts) == 2:
        verdict = _map(_map(features.get(name)).get(check))
        return verdict, _metric_definition(verdict)
    if check == "quality" and len(parts) == 3:
        verdict = _map(_map(_map(features.get(name)).get("quality")).get(parts[1]))
        return verdict, QUALITY_DEFINITIONS.get(parts[1], "")
    if check == "health" and len(parts) == 2:
        return _map(_map(results.get("health")).get(name)), HEALTH_DEFINITIONS.get(name, "")
    return _map(_map(results.get(check)).get(name)), ""


def _metric_definition(verdict: Mapping[str, Any]) -> str:
    metric = str(verdict.get("metric", ""))
    text = METRIC_NAMES.get(metric, metric)
    if verdict.get("log_base"):
        text += f", log base {verdict['log_base']}"
    return text


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _float(value: Any) -> float | None:
    try:
        return None if value is None or isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return None


def _counts(breaches: Iterable[Breach]) -> list[tuple[str, int]]:
    """Breaches per check, the known checks first in a fixed order, then the others."""
    counts: dict[str, int] = {}
    for b in breaches:
        counts[b.check] = counts.get(b.check, 0) + 1
    order = list(_CHECK_WORDS)
    return sorted(
        counts.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0])
    )


def _count(check: str, n: int) -> str:
    one, many, happened = _CHECK_WORDS.get(check, (f"{check} check", f"{check} checks", "breached"))
    return f"{n} {one if n == 1 else many} {happened}"


def _section(title: str, lines: list[str]) -> list[str]:
    if not lines:
        return []
    shown = [f"  - {_one_line(line)}" for line in lines[:MAX_LINES_PER_SECTION]]
    if len(lines) > MAX_LINES_PER_SECTION:
        shown.append(f"  ... and {len(lines) - MAX_LINES_PER_SECTION} more")
    return [f"{title}:", *shown, ""]


def _num(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.4g}"


def _one_line(text: str) -> str:
    # Names come from users; a newline in a subject would be a header injection.
    return " ".join(text.split())


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _stamp(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
