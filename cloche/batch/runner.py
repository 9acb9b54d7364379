"""Runs queued batch jobs for `cloche up`, each in its own process.

The scheduler's lease holder calls ``JobRunner.tick``: it marks jobs whose runner died as failed
(resumable), and starts queued jobs as ``python -m cloche.batch.runner JOB_ID`` children, so a
job neither shares the server's event loop nor dies with a server worker. ``cloche batch
cancel`` reaches a child through the store. A child gets the server's settings exactly, and runs
its job confined to the places they allow (cloche/batch/places.py), on their Ray address.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from sqlalchemy import select

from cloche.batch import service
from cloche.batch.places import Places
from cloche.config import Settings
from cloche.errors import ClocheError
from cloche.store.store import Store
from cloche.store.tables import BatchJobRow, utcnow

log = logging.getLogger(__name__)
SETTINGS_ENV = "CLOCHE_CHILD_SETTINGS"  # the server's settings, exactly (JSON)


def fail_orphans(store: Store) -> list[str]:
    """Jobs marked running whose process is gone end as failed, saying how to resume them."""
    failed = []
    with store.transaction() as session:
        for row in session.scalars(select(BatchJobRow).where(BatchJobRow.state == "running")):
            if service.runner_alive(row):
                continue
            done = (row.progress or {}).get("rows_done", 0)
            total = (row.progress or {}).get("rows_total", "?")
            row.state, row.finished_at = "failed", utcnow()
            row.message = (
                f"its process ({row.runner}) stopped after {done} of {total} rows; "
                f"`cloche batch resume {row.id}` continues from the last finished chunk"
            )
            failed.append(row.id)
    return failed


class JobRunner:
    """Starts queued jobs, at most ``max_jobs`` at once, as child processes of this server."""

    def __init__(self, store: Store, settings: Settings, *, max_jobs: int = 1) -> None:
        self.store = store
        self.settings = settings
        self.max_jobs = max_jobs
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def tick(self) -> None:
        self.children = {j: p for j, p in self.children.items() if p.poll() is None}
        fail_orphans(self.store)
        free = self.max_jobs - len(self.children)
        if free <= 0:
            return
        with self.store.transaction() as session:
            queued = session.scalars(
                select(BatchJobRow.id)
                .where(BatchJobRow.state == "queued")
                .order_by(BatchJobRow.created_at)
                .limit(free + len(self.children))
            ).all()
        for job_id in queued:
            if job_id not in self.children and len(self.children) < self.max_jobs:
                self.children[job_id] = self._start(job_id)

    def _start(self, job_id: str) -> subprocess.Popen[bytes]:
        logs = self.store.home / "run" / "batch"
        logs.mkdir(parents=True, exist_ok=True)
        env = os.environ | {
            "CLOCHE_HOME": str(self.store.home),
            "CLOCHE_DB_URL": self.settings.database_url,
            "CLOCHE_STORE__ARTIFACTS_URL": self.settings.artifacts_url,
            # The allowed places and the Ray address, as the server was given them (by code
            # in tests, where the environment does not hold them).
            SETTINGS_ENV: self.settings.model_dump_json(),
        }
        with open(logs / f"{job_id}.log", "ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "cloche.batch.runner", job_id],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # a Ctrl-C to the server does not kill a job mid-chunk
            )

    def stop(self, *, grace_s: float = 3.0) -> None:
        """Give children that are finishing a moment; leave the others running on their own.

        A job does not depend on the server: a long one goes on after `cloche up` stops.
        """
        for job_id, child in self.children.items():
            try:
                child.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                log.info("batch job %s goes on after the server stops (pid %s)", job_id, child.pid)
                _DETACHED.append(child)  # kept, not collected: Popen warns on a live child
        self.children.clear()


_DETACHED: list[subprocess.Popen[bytes]] = []


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m cloche.batch.runner JOB_ID", file=sys.stderr)
        return 2
    raw = os.environ.get(SETTINGS_ENV)
    settings = Settings.model_validate_json(raw) if raw else Settings()
    store = Store.open(settings)
    try:
        job = service.execute(
            store,
            argv[0],
            places=Places.from_settings(settings),
            ray_address=settings.batch.ray_address,
        )
    except ClocheError as exc:
        print(f"batch job {argv[0]}: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    finally:
        store.close()
    print(f"batch job {job.id}: {job.state}: {job.message}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main(sys.argv[1:]))
