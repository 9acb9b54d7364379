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
SKEWED_HIT_RATE = 0.95


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
    peak_rss: int = 0
    sweeps: dict[str, list[Sample]] = field(default_factory=dict)
    skipped: str = ""
    all_resident: bool = False  # every model loaded before the sweeps: every request is a hit
    # Model loads the server counted during each sweep (its /metrics), when it exposes them.
    loads: dict[str, int] = field(default_factory=dict)


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
    ("hit rate", 8), ("hit p50", 8), ("hit p99", 8), ("cold n", 6), ("cold p50", 8),
    ("cold p99", 8),
)  # fmt: skip


def table(runs: Sequence[Run]) -> str:
    """One table: a row per server and sweep, latencies in ms, memory in MB (10^6 bytes),
    then a line per run on how hits were told from cold loads (and why a run was skipped)."""
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
                "none" if run.budget is None else _mb(run.budget),
                "-" if math.isnan(parts.hit_rate) else f"{parts.hit_rate:.1%}",
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


def judge(runs: Sequence[Run]) -> list[Goal]:
    """Issue 19's four goals, judged on the budgeted and the no-budget cloche runs."""
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
        for name in ("peak memory <= budget + 300 MB", "hit-path p99 <= 1.1x no-budget p99",
                     "skewed-sweep hit rate >= 95%"):  # fmt: skip
            goals.append(Goal(name, None, why))
        return goals
    limit = budgeted.budget + SLACK_BYTES
    goals.append(
        Goal(
            "peak memory <= budget + 300 MB",
            budgeted.peak_rss <= limit,
            f"peak {_mb(budgeted.peak_rss)} MB, limit {_mb(limit)} MB",
        )
    )
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
    rate = parts["skewed"].hit_rate if budgeted.sweeps.get("skewed") else math.nan
    goals.append(
        Goal(
            "skewed-sweep hit rate >= 95%",
            rate >= SKEWED_HIT_RATE if not math.isnan(rate) else None,
            "no skewed sweep" if math.isnan(rate) else f"{rate:.1%}",
        )
    )
    return goals
