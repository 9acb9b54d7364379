"""The pure half of bench/many_models.py: classify requests, summarise runs, judge the goals.

No servers, no clocks: the unit test feeds these functions synthetic numbers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

MB = 1_000_000
MIB = 1024 * 1024
SLACK_BYTES = 300 * MB  # issue 19: peak memory <= budget + 300 MB
HIT_P99_RATIO = 1.1  # hit-path p99 within 1.1x of the no-budget server's
SKEWED_HIT_RATE = 0.95  # judged on the hot set's requests (see judge)
PEAK_GOAL = "peak - idle <= budget + 300 MB"
HIT_GOAL = "skewed-sweep hit rate on the hot set >= 95%"


@dataclass(frozen=True)
class Sample:
    """One request: which model, how long the client waited, whether the answer matched the
    model's own predict, and what the server said about its cache (None: it said nothing)."""

    model: str
    latency_ms: float
    correct: bool
    cache: str | None = None  # "hit" or "miss", from a header the server adds


@dataclass
class Run:
    """One server's sweeps. ``budget`` is the memory budget in bytes (None: unlimited);
    ``skipped`` says why the server did not run (then it has no sweeps)."""

    label: str
    budget: int | None
    peak_rss: int = 0  # the whole process tree, transient children included
    sweeps: dict[str, list[Sample]] = field(default_factory=dict)
    skipped: str = ""
    all_resident: bool = False  # every model loaded before the sweeps: every request is a hit
    # Model loads the server counted during each sweep (its /metrics), when it exposes them.
    loads: dict[str, int] = field(default_factory=dict)
    # The server's own processes only (parent, workers): no transient children such as the
    # payload-log compaction or a model-measuring child. None: not told apart.
    peak_own: int | None = None
    transient_peak: int = 0  # the most the transient children held at once
    # The same server's own processes idle: same command and workers, no model of the bench
    # loaded (only a tiny one of the same framework, so its imports are counted). None: unknown.
    idle_rss: int | None = None


@dataclass(frozen=True)
class Split:
    """A sweep's requests split into hits and cold loads, and how the split was decided."""

    hits: list[float]
    cold: list[float]
    method: str

    @property
    def hit_rate(self) -> float:
        total = len(self.hits) + len(self.cold)
        return len(self.hits) / total if total else math.nan


SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$", re.IGNORECASE)
UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_size(text: str) -> int:
    """Bytes in "600MiB", "1.5GB", "4096"; a ValueError saying how to write one otherwise."""
    found = SIZE.match(text)
    if not found or float(found.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a size above zero; write e.g. 600MiB or 2GB")
    return int(float(found.group(1)) * UNITS[(found.group(2) or "b").lower()])


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile by nearest rank (no interpolation: a p99 of 100 requests is the
    99th slowest one that happened); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def split(
    samples: Sequence[Sample],
    threshold_ms: float,
    *,
    all_resident: bool = False,
    loads: int | None = None,
) -> Split:
    """Hits and cold loads, by the best evidence at hand (the table says which it used):
    the server's word on each request; else its count of loads during the sweep (``loads``),
    the slowest that many requests being the cold ones; else latency, a request slower than
    ``threshold_ms`` (the no-budget server's p99) counting as a cold load."""
    if all_resident:
        return Split([s.latency_ms for s in samples], [], "all models resident")
    if any(s.cache is not None for s in samples):
        # A server that marks its loads leaves the hits unmarked (or marks them "hit").
        return Split(
            [s.latency_ms for s in samples if s.cache != "miss"],
            [s.latency_ms for s in samples if s.cache == "miss"],
            "the server's own word (Server-Timing load stage or cache header)",
        )
    if loads is not None:
        ordered = sorted(s.latency_ms for s in samples)
        cold = min(max(loads, 0), len(ordered))
        return Split(
            ordered[: len(ordered) - cold],
            ordered[len(ordered) - cold :],
            "the server's load count (/metrics), its slowest requests the cold ones",
        )
    return Split(
        [s.latency_ms for s in samples if s.latency_ms <= threshold_ms],
        [s.latency_ms for s in samples if s.latency_ms > threshold_ms],
        f"latency > {threshold_ms:.1f} ms (no-budget p99)",
    )


LOAD_STAGES = ("load", "fetch", "hash", "deserialise", "deserialize", "warmup", "warm-up", "cold")


def cache_mark(headers: Mapping[str, str]) -> str | None:
    """Whether the server said "hit" or "miss": an ``X-Cloche-Model-Cache`` header, or a
    load stage in ``Server-Timing`` (a miss); None when it said nothing either way."""
    said = headers.get("x-cloche-model-cache", "").strip().lower()
    if said in ("hit", "miss"):
        return said
    timing = headers.get("server-timing", "")
    stages = {part.split(";")[0].strip().lower() for part in timing.split(",") if part.strip()}
    if any(stage.startswith(LOAD_STAGES) for stage in stages):
        return "miss"
    return None


def prometheus_sum(text: str, metric: str) -> float | None:
    """The sum of every series of ``metric`` in a Prometheus text exposition; None when the
    server exposes no such metric."""
    total, seen = 0.0, False
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name == metric and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
            seen = True
    return total if seen else None


def hot_hit_rate(samples: Sequence[Sample], hot: frozenset[str]) -> float:
    """The hit rate of the requests to the ``hot`` models, by the server's word on each request
    (NaN when it gave none: the load count and latency rules cannot say which model missed)."""
    marked = [s for s in samples if s.model in hot]
    if not marked or not any(s.cache is not None for s in samples):
        return math.nan
    return sum(s.cache != "miss" for s in marked) / len(marked)


@dataclass(frozen=True)
class Ceiling:
    """The best hit rate any eviction policy can reach on the skewed sweep under a budget, from
    the models' measured resident sizes and a worker's share. A worker holds ``slots`` models;
    each request picks a hot model (uniformly among them) or a cold one (uniformly among the
    rest), independently of the past, so no policy that cannot see the future finds the asked
    model resident more often than the ``slots`` likeliest models are asked for: the hot ones
    first, then ``slots - hot`` of the cold ones. First loads (each model's first request in
    a worker) are not counted: the ceiling is of the steady state."""

    slots: int
    hot: int
    cold: int
    hot_share: float  # of the sweep's requests
    hot_rate: float
    cold_rate: float

    @property
    def overall(self) -> float:
        return self.hot_share * self.hot_rate + (1 - self.hot_share) * self.cold_rate

    def line(self) -> str:
        kept = min(self.slots, self.hot)
        free = max(self.slots - self.hot, 0)
        return (
            f"ceiling: a worker's share holds {self.slots} models at their mean measured size; "
            f"hot set {kept}/{self.hot} = {self.hot_rate:.1%}; overall {self.hot_share:.1%} x "
            f"{self.hot_rate:.1%} + {1 - self.hot_share:.1%} x {free}/{self.cold} = "
            f"{self.overall:.1%} (steady state, before first loads)"
        )


def ceiling(sizes: Sequence[int], share: int, hot: int, n_models: int, hot_share: float) -> Ceiling:
    """``sizes``: the models' measured resident bytes; ``share``: one worker's budget;
    ``hot_share``: the fraction of the sweep's requests that went to the ``hot`` models."""
    slots = int(share // (sum(sizes) / len(sizes))) if sizes else 0
    cold = max(n_models - hot, 0)
    hot_rate = min(slots, hot) / hot if hot else 1.0
    cold_rate = min(max(slots - hot, 0), cold) / cold if cold else 1.0
    return Ceiling(slots, hot, cold, hot_share, hot_rate, cold_rate)


def memory_lines(runs: Sequence[Run]) -> list[str]:
    """What each run's peak holds: the raw peak of the whole tree, its own processes' peak, the
    transient children's, and the idle footprint subtracted for the goal."""
    lines = []
    for run in runs:
        if run.skipped or run.peak_own is None:
            continue
        line = (
            f"* {run.label}: raw peak {_mb(run.peak_rss)} MB (whole tree); own processes "
            f"{_mb(run.peak_own)} MB; transient children at most {_mb(run.transient_peak)} MB"
        )
        if run.idle_rss is not None:
            line += (
                f"; idle {_mb(run.idle_rss)} MB; peak - idle {_mb(run.peak_own - run.idle_rss)} MB"
            )
        lines.append(line)
    return lines


def reference_p99(runs: Sequence[Run]) -> float:
    """The no-budget cloche server's p99 over all its requests: the hit-path yardstick."""
    for run in runs:
        if run.label.startswith("cloche") and run.budget is None and not run.skipped:
            return percentile([s.latency_ms for sweep in run.sweeps.values() for s in sweep], 99)
    return math.nan


def _mb(n: float) -> str:
    return "-" if math.isnan(n) else f"{n / MB:,.0f}"


def _ms(n: float) -> str:
    return "-" if math.isnan(n) else f"{n:.1f}"


COLUMNS = (
    ("server", 26), ("sweep", 7), ("reqs", 5), ("correct", 8), ("peak MB", 8), ("budget MB", 9),
    ("hit rate", 8), ("hot hit", 7), ("hit p50", 8), ("hit p99", 8), ("cold n", 6),
    ("cold p50", 8), ("cold p99", 8),
)  # fmt: skip


def _rate(rate: float) -> str:
    return "-" if math.isnan(rate) else f"{rate:.1%}"


def table(runs: Sequence[Run], hot: frozenset[str] = frozenset()) -> str:
    """One table: a row per server and sweep, latencies in ms, memory in MB (10^6 bytes; the
    raw peak of the whole process tree), the hit rate overall and on the ``hot`` models (the
    skewed sweep's), then a line per run on how hits were told from cold loads (and why a run
    was skipped)."""
    threshold = reference_p99(runs)
    head = " ".join(f"{name:>{width}}" if i else f"{name:<{width}}" for i, (name, width) in
                    enumerate(COLUMNS))  # fmt: skip
    lines = [head, "-" * len(head)]
    notes = []
    for run in runs:
        if run.skipped:
            notes.append(f"* {run.label}: skipped, {run.skipped}")
            continue
        method = ""
        for sweep, samples in run.sweeps.items():
            parts = split(
                samples, threshold, all_resident=run.all_resident, loads=run.loads.get(sweep)
            )
            cells = [
                run.label, sweep, str(len(samples)),
                f"{sum(s.correct for s in samples)}/{len(samples)}", _mb(run.peak_rss),
                "none" if run.budget is None else _mb(run.budget), _rate(parts.hit_rate),
                _rate(1.0 if run.all_resident else hot_hit_rate(samples, hot))
                if sweep == "skewed" else "-",
                _ms(percentile(parts.hits, 50)), _ms(percentile(parts.hits, 99)),
                str(len(parts.cold)), _ms(percentile(parts.cold, 50)),
                _ms(percentile(parts.cold, 99)),
            ]  # fmt: skip
            lines.append(
                " ".join(
                    f"{cell:>{width}}" if i else f"{cell:<{width}}"
                    for i, (cell, (_, width)) in enumerate(zip(cells, COLUMNS, strict=True))
                )
            )
            method = parts.method
        notes.append(f"* {run.label}: hits told by {method}" if run.sweeps else "")
    return "\n".join(lines + [n for n in notes if n])


@dataclass(frozen=True)
class Goal:
    name: str
    passed: bool | None  # None: could not be judged (the run it needs was skipped)
    detail: str

    def line(self) -> str:
        verdict = {True: "PASS", False: "FAIL", None: "SKIP"}[self.passed]
        return f"{verdict}  {self.name}: {self.detail}"


def judge(runs: Sequence[Run], hot: frozenset[str] = frozenset()) -> list[Goal]:
    """Issue 19's four goals, judged on the budgeted and the no-budget cloche runs: memory as
    the budgeted server's own processes' peak less their idle footprint (the raw peak when the
    idle footprint is unknown), the hit rate on the skewed sweep's ``hot`` models."""
    budgeted = next((r for r in runs if r.label.startswith("cloche") and r.budget), None)
    cloche = [r for r in runs if r.label.startswith("cloche") and not r.skipped]
    threshold = reference_p99(runs)
    goals = []
    answered = [s for r in cloche for sweep in r.sweeps.values() for s in sweep]
    wrong = sum(not s.correct for s in answered)
    goals.append(
        Goal(
            "every request answered correctly",
            (wrong == 0 and bool(answered)) if answered else None,
            f"{len(answered) - wrong}/{len(answered)} correct on cloche",
        )
    )
    if budgeted is None or budgeted.skipped or budgeted.budget is None:
        why = budgeted.skipped if budgeted else "no budgeted run"
        for name in (PEAK_GOAL, "hit-path p99 <= 1.1x no-budget p99", HIT_GOAL):
            goals.append(Goal(name, None, why))
        return goals
    goals.append(_memory_goal(budgeted))
    parts = {
        name: split(sweep, threshold, loads=budgeted.loads.get(name))
        for name, sweep in budgeted.sweeps.items()
    }
    hits = [h for p in parts.values() for h in p.hits]  # pooled, as the reference is
    hit_p99 = percentile(hits, 99)
    judged = not (math.isnan(hit_p99) or math.isnan(threshold))
    estimated = any(p.method.startswith("latency") for p in parts.values())
    goals.append(
        Goal(
            "hit-path p99 <= 1.1x no-budget p99",
            hit_p99 <= HIT_P99_RATIO * threshold if judged else None,
            f"{_ms(hit_p99)} ms against {_ms(threshold)} ms x {HIT_P99_RATIO}"
            # Hits estimated by latency are at most that p99 by definition: say so.
            + (" (hits estimated by latency: holds by construction)" if estimated else ""),
        )
    )
    goals.append(_hit_goal(budgeted, parts.get("skewed"), hot))
    return goals


def _memory_goal(run: Run) -> Goal:
    assert run.budget is not None
    limit = run.budget + SLACK_BYTES
    if run.idle_rss is None or run.peak_own is None:
        return Goal(
            PEAK_GOAL + " (idle unknown: raw peak)",
            run.peak_rss <= limit,
            f"raw peak {_mb(run.peak_rss)} MB, limit {_mb(limit)} MB",
        )
    grown = run.peak_own - run.idle_rss
    return Goal(
        PEAK_GOAL,
        grown <= limit,
        f"own processes' peak {_mb(run.peak_own)} - idle {_mb(run.idle_rss)} = {_mb(grown)} MB, "
        f"limit {_mb(limit)} MB (raw peak of the whole tree {_mb(run.peak_rss)} MB)",
    )


def _hit_goal(run: Run, skewed: Split | None, hot: frozenset[str]) -> Goal:
    samples = run.sweeps.get("skewed")
    if not samples or skewed is None:
        return Goal(HIT_GOAL, None, "no skewed sweep")
    rate = hot_hit_rate(samples, hot)
    overall = f"overall {skewed.hit_rate:.1%}"
    if math.isnan(rate):
        return Goal(HIT_GOAL, None, f"the server marked no request hit or miss; {overall}")
    return Goal(HIT_GOAL, rate >= SKEWED_HIT_RATE, f"hot set {rate:.1%} ({overall})")
