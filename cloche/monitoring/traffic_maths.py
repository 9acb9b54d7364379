"""The arithmetic behind traffic charts: cumulative counter samples into per-interval counts,
rates and latency quantiles. Pure functions over hand-checkable numbers; no store, no clock.

A counter only grows while its server runs; a value lower than the one before means the server
(or the last of its workers) restarted and counted again from zero, so the increase over that
interval is the new value itself (Prometheus's ``increase`` does the same). Rates therefore
never go negative, and what was counted before a restart is never counted twice.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

LATE_S = 2.0


@dataclass(frozen=True)
class Counts:
    """Requests by outcome and their latency histogram (counts per bucket, not cumulative
    across buckets), either since a server started (a sample) or over one interval (a delta)."""

    ok: int = 0
    client_errors: int = 0
    server_errors: int = 0
    latency: tuple[int, ...] = field(default_factory=tuple)

    @property
    def requests(self) -> int:
        return self.ok + self.client_errors + self.server_errors

    def _fields(self) -> tuple[int, ...]:
        return (self.ok, self.client_errors, self.server_errors, *self.latency)

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.ok + other.ok,
            self.client_errors + other.client_errors,
            self.server_errors + other.server_errors,
            _add(self.latency, other.latency),
        )


def _add(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    if not a or not b:
        return tuple(a or b)
    return tuple(x + y for x, y in zip(a, b, strict=True))


def is_reset(before: Counts, after: Counts) -> bool:
    """Whether ``after`` was counted from zero again since ``before`` (any counter went down)."""
    if len(before.latency) != len(after.latency):
        return True  # another bucket layout: another release of the server, counted anew
    return any(b > a for b, a in zip(before._fields(), after._fields(), strict=True))


def increase(before: Counts, after: Counts) -> Counts:
    """What was counted between two samples of one server, restarts included."""
    if is_reset(before, after):
        return after
    return Counts(
        after.ok - before.ok,
        after.client_errors - before.client_errors,
        after.server_errors - before.server_errors,
        tuple(a - b for a, b in zip(after.latency, before.latency, strict=True)),
    )


def bucketed_increases(
    samples: Iterable[tuple[float, Counts]], *, step: float, first: float, last: float
) -> dict[float, Counts]:
    """One server's samples (time in epoch seconds, counters) as the increase per interval.

    An interval is labelled by its end: interval ``t`` holds the increases whose later sample
    was taken in (t - step, t]. Samples are taken on the boundaries of the sampling interval,
    a little after them (scheduling, reading the counters), so a sample up to ``LATE_S`` after
    ``t`` still counts as taken at ``t``. The first sample is only a starting point: what came
    before it is unknown. Labels outside [first, last] are dropped."""
    ordered = sorted(samples, key=lambda s: s[0])
    rows = [counts._fields() for _, counts in ordered]
    times = [at for at, _ in ordered]
    if len({len(row) for row in rows}) <= 1:
        labels, sums = bucketed_rows(times, rows, step=step, first=first, last=last)
        return {
            float(label): Counts(int(s[0]), int(s[1]), int(s[2]), tuple(int(v) for v in s[3:]))
            for label, s in zip(labels.tolist(), sums.tolist(), strict=True)
        }
    # Another bucket layout inside the window (a new release): pairwise, rarely.
    late = min(LATE_S, step / 5)
    out: dict[float, Counts] = {}
    for (_, before), (at, counts) in itertools.pairwise(ordered):
        label = math.ceil((at - late) / step) * step
        if first <= label <= last:
            out[label] = out.get(label, Counts()) + increase(before, counts)
    return out


def bucketed_rows(
    times: Sequence[float],
    rows: Sequence[Sequence[int]],
    *,
    step: float,
    first: float,
    last: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``bucketed_increases`` of samples given as their times, in order, and their counters
    (ok, client errors, server errors, then the latency buckets: one layout for all), in
    arrays: the labels, and a row of increased counters per label. A day of 10-second samples
    is thousands, and the console charts it on each request."""
    counters = np.asarray(rows, dtype=np.int64).reshape(len(rows), -1)
    if len(rows) < 2:
        return np.zeros(0), np.zeros((0, counters.shape[1]), dtype=np.int64)
    at = np.asarray(times, dtype=np.float64)[1:]
    deltas = counters[1:] - counters[:-1]
    restarted = (deltas < 0).any(axis=1)  # counted from zero again: the increase is the value
    deltas[restarted] = counters[1:][restarted]
    late = min(LATE_S, step / 5)
    labels = np.ceil((at - late) / step) * step
    inside = (labels >= first) & (labels <= last)
    found, which = np.unique(labels[inside], return_inverse=True)
    sums = np.zeros((len(found), counters.shape[1]), dtype=np.int64)
    np.add.at(sums, which, deltas[inside])
    return found, sums


def histogram_quantile(q: float, counts: Sequence[int], bounds: Sequence[float]) -> float | None:
    """The q-quantile of observations counted in buckets with upper ``bounds`` (and one
    last bucket above the highest bound), interpolated linearly inside its bucket as
    Prometheus's ``histogram_quantile`` does. It is an estimate only to within that bucket's
    width: the true value lies somewhere in the bucket. A quantile in the open top bucket is
    reported as the highest bound (it is at least that). None when nothing was counted."""
    return histogram_quantiles(q, [list(counts)], bounds)[0]


def histogram_quantiles(
    q: float, rows: Sequence[Sequence[int]] | np.ndarray, bounds: Sequence[float]
) -> list[float | None]:
    """``histogram_quantile`` of each row of bucket counts, in arrays (a day's chart asks
    for 1,440 points of three quantiles per deployment)."""
    if len(rows) == 0 or len(rows[0]) == 0:
        return [None] * len(rows)
    counts = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
    total = counts.sum(axis=1)
    rank = q * total
    before = np.cumsum(counts, axis=1) - counts  # counted in the buckets below each one
    hit = (before + counts >= rank[:, None]) & (counts > 0)
    i = hit.argmax(axis=1)
    at = np.arange(len(counts))
    top = float(bounds[-1])
    upper = np.append(np.asarray(bounds, dtype=np.float64), top)
    lower = np.concatenate(([0.0], upper[:-1]))
    inside = hit.any(axis=1) & (i < len(bounds))  # else the open top bucket: the highest bound
    with np.errstate(divide="ignore", invalid="ignore"):
        found = lower[i] + (upper[i] - lower[i]) * (rank - before[at, i]) / counts[at, i]
    values = np.where(inside, found, top)
    return [
        None if t == 0 else float(v) for t, v in zip(total.tolist(), values.tolist(), strict=True)
    ]


def rate(count: int | None, seconds: float) -> float | None:
    return None if count is None else count / seconds


def share(part: int, whole: int) -> float | None:
    return part / whole if whole else None
