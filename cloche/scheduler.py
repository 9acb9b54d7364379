"""The scheduler inside `cloche up`: one holder at a time, across workers and replicas.

Every worker process runs this loop, but only the one holding the lease (a row in the metadata
store, renewed each tick, taken over when it expires) runs the ticks: queueing scheduled batch
runs, starting queued jobs, and (later) monitors. If the holder dies, another takes over within
``LEASE_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Sequence
from datetime import timedelta

from sqlalchemy import delete, insert, update
from sqlalchemy.exc import IntegrityError

from cloche.config import Settings
from cloche.store.store import Store
from cloche.store.tables import SchedulerLeaseRow, utcnow

LEASE_NAME = "scheduler"
LEASE_S = 15.0
log = logging.getLogger(__name__)

Tick = Callable[[], object]


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def hold_lease(store: Store, holder: str, *, seconds: float = LEASE_S) -> bool:
    """Take or renew the lease; True when ``holder`` holds it for the next ``seconds``."""
    now = utcnow()
    until = now + timedelta(seconds=seconds)
    table = SchedulerLeaseRow
    with store.transaction() as session:
        taken = session.execute(
            update(table)
            .where(table.name == LEASE_NAME)
            .where((table.holder == holder) | (table.expires_at < now))
            .values(holder=holder, expires_at=until)
        )
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            return True
    try:
        with store.transaction() as session:
            session.execute(insert(table).values(name=LEASE_NAME, holder=holder, expires_at=until))
        return True
    except IntegrityError:  # someone else holds it
        return False


def release_lease(store: Store, holder: str) -> None:
    table = SchedulerLeaseRow
    with store.transaction() as session:
        session.execute(delete(table).where(table.name == LEASE_NAME).where(table.holder == holder))


class Scheduler:
    def __init__(
        self,
        store: Store,
        ticks: Sequence[Tick],
        *,
        every_s: float = 2.0,
        on_stop: Sequence[Tick] = (),
    ) -> None:
        self.store = store
        self.ticks = list(ticks)
        self.on_stop = list(on_stop)
        self.every_s = every_s
        self.holder = holder_name()
        self.leading = False

    def tick_once(self) -> bool:
        """Renew the lease and, when held, run every tick; one failing tick stops no other."""
        self.leading = hold_lease(self.store, self.holder)
        if not self.leading:
            return False
        for tick in self.ticks:
            try:
                tick()
            except Exception:
                log.exception("scheduler tick %s failed", getattr(tick, "__name__", tick))
        return True

    async def run(self) -> None:
        try:
            while True:
                try:
                    await asyncio.to_thread(self.tick_once)
                except Exception:  # the store is down: try again next tick
                    log.exception("scheduler could not reach the metadata store")
                await asyncio.sleep(self.every_s)
        finally:
            for stop in self.on_stop:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(stop)
            if self.leading:
                with contextlib.suppress(Exception):
                    release_lease(self.store, self.holder)


def for_server(store: Store, settings: Settings) -> Scheduler:
    """The scheduler `cloche up` runs: scheduled batch runs, queued jobs and pipeline runs,
    then due monitors."""
    from cloche.batch import schedules
    from cloche.batch.places import Places
    from cloche.batch.runner import JobRunner
    from cloche.monitoring import child, runs
    from cloche.pipelines import schedules as pipeline_schedules
    from cloche.pipelines.server_runs import PipelineRunner
    from cloche.store.tables import utcnow

    runner = JobRunner(store, settings, max_jobs=settings.batch.max_concurrent_jobs)
    pipelines = PipelineRunner(store, settings, max_runs=settings.scheduler.max_pipeline_runs)

    places = Places.from_settings(settings)

    def queue_scheduled_runs() -> None:
        schedules.queue_due(store, places=places)

    def queue_scheduled_pipelines() -> None:
        pipeline_schedules.queue_due(store)

    def run_due_monitors() -> None:
        now = utcnow()
        names = runs.take_due(store, now)
        if names:  # off this worker's GIL: see monitoring/child.py
            child.run_in_child(settings, names, now)

    return Scheduler(
        store,
        [
            queue_scheduled_runs,
            runner.tick,
            queue_scheduled_pipelines,
            pipelines.tick,
            run_due_monitors,
        ],
        every_s=settings.scheduler.tick_seconds,
        on_stop=[runner.stop, pipelines.stop],
    )
