"""Traffic history: one task per server samples its summed request counters into the store.

Nothing is added per request. Workers already publish their cumulative counters once a second
(``serving/metrics.py``); every ``serving.traffic_sample_seconds`` (10 s) one worker of each
server (the holder of a lock file in the server's run folder) adds them up and stores one row
per (endpoint, deployment) under the server's source id, so replicas sharing a database keep
their own series and the charts add them up. Once a minute the same task thins samples older
than an hour to one a minute and deletes those older than a day: at most about 360 + 1,380
rows per deployment and server.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import socket
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, select

from cloche.monitoring.traffic_maths import Counts, is_reset
from cloche.serving import metrics
from cloche.store.store import Store
from cloche.store.tables import TrafficSampleRow, utcnow

log = logging.getLogger(__name__)
RAW_FOR = timedelta(hours=1)
KEEP_FOR = timedelta(days=1, minutes=5)  # a day, and a sample before it to start from
DOWNSAMPLED_S = 60
TIDY_EVERY_S = 60.0
Key = tuple[str, str]  # endpoint, deployment


def source_id(server_id: str) -> str:
    """A server's name in the samples: its host and id, so two replicas never share one."""
    return f"{socket.gethostname()}:{server_id}"


def read_totals(folder: Path) -> dict[Key, Counts]:
    """The counters of every worker of one server (the files in its metrics folder), added up."""
    totals: dict[Key, Counts] = defaultdict(Counts)
    for snap in metrics.read_snapshots(folder):
        for endpoint, deployment, status, count in snap.get("requests", []):
            status, count = int(status), int(count)
            totals[(endpoint, deployment)] += Counts(
                ok=count if status < 400 else 0,
                client_errors=count if 400 <= status < 500 else 0,
                server_errors=count if status >= 500 else 0,
            )
        for endpoint, deployment, counts, _ in snap.get("deployment_latency", []):
            totals[(endpoint, deployment)] += Counts(latency=tuple(int(c) for c in counts))
    return dict(totals)


def zero_starts(totals: dict[Key, Counts], seen: set[Key]) -> dict[Key, Counts]:
    """Zero counters for the deployments that first appear in ``totals``, to be stored at the
    previous sample's time: this server counted them from zero since then. Without it, what a
    new deployment served before its first sample would belong to no interval."""
    return {
        key: Counts(latency=(0,) * len(c.latency)) for key, c in totals.items() if key not in seen
    }


def record_sample(
    store: Store, *, source: str, totals: dict[Key, Counts], at: datetime, resolution_s: int
) -> int:
    """Store one sample of ``source``'s counters; returns the rows written."""
    with store.transaction() as session:
        session.add_all(
            TrafficSampleRow(
                source=source,
                at=at,
                resolution_s=resolution_s,
                endpoint=endpoint,
                deployment=deployment,
                ok=c.ok,
                client_errors=c.client_errors,
                server_errors=c.server_errors,
                latency=list(c.latency),
            )
            for (endpoint, deployment), c in totals.items()
        )
    return len(totals)


def tidy(store: Store, *, source: str, now: datetime) -> None:
    """Thin ``source``'s samples older than an hour to one a minute; drop those over a day old.

    Of each minute's samples the one nearest the minute mark stays, and so does any sample just
    before a restart (the next one is lower), so the increases between the samples that stay
    add up to the same totals."""
    with store.transaction() as session:
        session.execute(
            delete(TrafficSampleRow).where(
                TrafficSampleRow.source == source, TrafficSampleRow.at < now - KEEP_FOR
            )
        )
        rows = session.scalars(
            select(TrafficSampleRow)
            .where(TrafficSampleRow.source == source, TrafficSampleRow.at < now - RAW_FOR)
            .where(TrafficSampleRow.resolution_s < DOWNSAMPLED_S)
            .order_by(TrafficSampleRow.at)
        ).all()
        series: dict[Key, list[TrafficSampleRow]] = defaultdict(list)
        for row in rows:
            series[(row.endpoint, row.deployment)].append(row)
        for samples in series.values():
            keep = _kept(samples)
            for row in samples:
                if row.id in keep:
                    row.resolution_s = DOWNSAMPLED_S
                else:
                    session.delete(row)


def _kept(samples: list[TrafficSampleRow]) -> set[int]:
    nearest: dict[int, TrafficSampleRow] = {}
    keep: set[int] = set()
    for i, row in enumerate(samples):
        ts = row.at.timestamp()
        minute = round(ts / DOWNSAMPLED_S)
        best = nearest.get(minute)
        if best is None or abs(ts - minute * 60) < abs(best.at.timestamp() - minute * 60):
            nearest[minute] = row
        if i + 1 < len(samples) and is_reset(_counts(row), _counts(samples[i + 1])):
            keep.add(row.id)
    return keep | {row.id for row in nearest.values()}


def _counts(row: TrafficSampleRow) -> Counts:
    return Counts(row.ok, row.client_errors, row.server_errors, tuple(row.latency))


@contextlib.contextmanager
def sampler_lock(path: Path) -> Iterator[bool]:
    """Whether this process holds ``path``'s lock (one worker of a server samples; if it dies
    the lock is freed and another takes over). Held while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


async def run_sampler(store: Store, metrics_dir: Path, server_id: str, every_s: float) -> None:
    """Sample this server's counters every ``every_s`` seconds, on the step's boundaries, for
    as long as the task runs; a worker that does not hold the server's lock waits for it."""
    source = source_id(server_id)
    lock = metrics_dir.parent / "traffic-sampler.lock"
    while True:
        with sampler_lock(lock) as mine:
            if mine:
                await _sample_forever(store, metrics_dir, source, every_s)
        await asyncio.sleep(every_s)


async def _sample_forever(store: Store, folder: Path, source: str, every_s: float) -> None:
    loop = asyncio.get_running_loop()
    last_tidy = -TIDY_EVERY_S
    resolution = max(1, round(every_s))
    seen: set[Key] = set()
    last: datetime | None = None
    while True:
        try:
            totals = await asyncio.to_thread(read_totals, folder)
            now = utcnow()
            if last is not None and (starts := zero_starts(totals, seen)):
                await asyncio.to_thread(
                    record_sample, store, source=source, totals=starts, at=last, resolution_s=0
                )
            await asyncio.to_thread(
                record_sample, store, source=source, totals=totals, at=now, resolution_s=resolution
            )
            seen.update(totals)
            last = now
            if loop.time() - last_tidy >= TIDY_EVERY_S:
                last_tidy = loop.time()
                await asyncio.to_thread(tidy, store, source=source, now=now)
        except Exception as exc:  # history must never take serving down
            log.warning("traffic sampling failed: %s", exc)
        await asyncio.sleep(until_next(utcnow().timestamp(), every_s))


def until_next(now: float, every_s: float) -> float:
    """Seconds to the next multiple of ``every_s``: samples land on the charts' boundaries."""
    return every_s - (now % every_s) or every_s
