"""Runs the server's queued pipeline runs, each in a child process of `cloche up`, and resumes a
run whose process died (a killed server, a crashed machine): the new process skips the steps
that already finished.

The scheduler's lease holder calls ``PipelineRunner.tick``; a child is
``python -m cloche.pipelines.server_runs RUN_ID``, which loads the registered source in its own
process, checks that it is the version the run was queued for, and runs it.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from sqlalchemy import select

from cloche.batch.runner import SETTINGS_ENV
from cloche.batch.service import runner_alive, runner_name
from cloche.config import Settings
from cloche.errors import ClocheError, JobStateConflict, PipelineDefinitionError
from cloche.pipelines import records
from cloche.pipelines.entities import PipelineRun
from cloche.pipelines.lifecycle import finish_cancelled
from cloche.pipelines.loading import load_pipeline
from cloche.pipelines.registered import source_of
from cloche.pipelines.runner import artifacts_root, execute_run
from cloche.store.private import private_dir
from cloche.store.store import Store
from cloche.store.tables import PipelineRunRow, utcnow

log = logging.getLogger(__name__)
HEARTBEAT_S = 2.0
WATCH_S = 0.5  # how soon a cancelled run's process stops
ACTIVE = ("running", "waiting")


def requeue_orphans(store: Store) -> list[str]:
    """Server runs marked running or waiting whose process is gone are queued again."""
    requeued = []
    with store.transaction() as session:
        query = select(PipelineRunRow).where(
            PipelineRunRow.state.in_(ACTIVE), PipelineRunRow.pipeline_version.is_not(None)
        )
        for row in session.scalars(query):
            if runner_alive(row):
                continue
            row.error = f"its process ({row.runner or 'unknown'}) stopped; resumed"
            row.state, row.runner = "queued", None
            requeued.append(row.id)
    for run_id in requeued:
        log.info("pipeline run %s lost its process: queued to resume", run_id)
    return requeued


class PipelineRunner:
    """Starts queued server runs, at most ``max_runs`` at once, as child processes."""

    def __init__(self, store: Store, settings: Settings, *, max_runs: int = 2) -> None:
        self.store = store
        self.settings = settings
        self.max_runs = max_runs
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def tick(self) -> None:
        self.children = {r: p for r, p in self.children.items() if p.poll() is None}
        requeue_orphans(self.store)
        finish_cancelled(self.store)
        free = self.max_runs - len(self.children)
        if free <= 0:
            return
        with self.store.transaction() as session:
            queued = session.scalars(
                select(PipelineRunRow.id)
                .where(PipelineRunRow.state == "queued")
                .order_by(PipelineRunRow.created_at)
                .limit(free + len(self.children))
            ).all()
        for run_id in queued:
            if run_id not in self.children and len(self.children) < self.max_runs:
                self.children[run_id] = self._start(run_id)

    def _start(self, run_id: str) -> subprocess.Popen[bytes]:
        logs = private_dir(self.store.home / "run" / "pipelines")
        env = os.environ | {
            "CLOCHE_HOME": str(self.store.home),
            "CLOCHE_DB_URL": self.settings.database_url,
            "CLOCHE_STORE__ARTIFACTS_URL": self.settings.artifacts_url,
            SETTINGS_ENV: self.settings.model_dump_json(),
        }
        with open(logs / f"{run_id}.log", "ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "cloche.pipelines.server_runs", run_id],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # a run goes on while the server restarts
            )

    def stop(self) -> None:
        self.children.clear()  # runs go on by themselves; a new server finds them alive


def claim(store: Store, run_id: str) -> PipelineRun:
    """Mark a queued run as run by this process."""
    with store.transaction() as session:
        row = session.get(PipelineRunRow, run_id)
        if row is None or row.state != "queued" or row.pipeline_version is None:
            state = row.state if row is not None else "missing"
            raise JobStateConflict(f"pipeline run {run_id} is {state}, not queued for the server")
        row.state, row.runner, row.heartbeat_at = "running", runner_name(), utcnow()
    return records.get_run(store, run_id)


def run_queued(store: Store, run_id: str, *, ray_address: str | None = None) -> PipelineRun:
    """Claim and run (or resume) a queued server run in this process (a ``ray`` run's steps on
    the cluster at ``ray_address``, the server's setting)."""
    run = claim(store, run_id)
    with store.transaction() as session:
        version = session.get(PipelineRunRow, run_id).pipeline_version  # type: ignore[union-attr]
    source, file_name, source_hash = source_of(store, run.pipeline, int(version or 0))
    folder = private_dir(store.home / "run" / "pipelines" / "sources")
    path = folder / f"{run.pipeline}-{version}-{Path(file_name).name}"
    if not path.name.endswith(".py"):
        path = path.with_name(path.name + ".py")
    path.write_text(source)
    pipeline = load_pipeline(f"{path}:{run.pipeline}")
    # A graph registered over REST was built by the client: the run is of what the source makes.
    same_graph = pipeline.graph.to_json() == records.run_graph(store, run_id).to_json()
    if pipeline.source_hash != run.source_hash or source_hash != run.source_hash or not same_graph:
        raise PipelineDefinitionError(
            f"the registered source of {run.pipeline} no longer defines the pipeline run "
            f"{run.id} was queued for (its source hash or graph differs)",
            hint="a source that imports other files must find the same files on the server",
        )
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(store, run_id, stop), daemon=True)
    beat.start()
    watch = threading.Thread(target=_watch_cancel, args=(store, run_id, stop), daemon=True)
    watch.start()
    try:
        root = artifacts_root(store)
        return execute_run(store, run_id, pipeline.components, root=root, ray_address=ray_address)
    finally:
        stop.set()


def _heartbeat(store: Store, run_id: str, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        try:
            with store.transaction() as session:
                row = session.get(PipelineRunRow, run_id)
                if row is not None:
                    row.heartbeat_at = utcnow()
        except Exception:  # the store is briefly away: the next beat tries again
            log.exception("pipeline run %s: heartbeat failed", run_id)


def _watch_cancel(store: Store, run_id: str, stop: threading.Event) -> None:
    while not stop.wait(WATCH_S):
        try:
            with store.transaction() as session:
                row = session.get(PipelineRunRow, run_id)
                cancelled = row is not None and row.state == "cancelled"
        except Exception:  # the store is briefly away: look again
            log.exception("pipeline run %s: could not read its state", run_id)
            continue
        if cancelled:
            log.info("pipeline run %s was cancelled: stopping", run_id)
            stop_process_group()


def stop_process_group() -> None:
    """Kill this process and the step processes it forked (a thread cannot be stopped)."""
    for child in multiprocessing.active_children():
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid or 0, signal.SIGKILL)
    if os.getpgrp() == os.getpid():  # started by PipelineRunner: the group is this run's own
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m cloche.pipelines.server_runs RUN_ID", file=sys.stderr)
        return 2
    raw = os.environ.get(SETTINGS_ENV)
    settings = Settings.model_validate_json(raw) if raw else Settings()
    store = Store.open(settings)
    try:
        run = run_queued(store, argv[0], ray_address=settings.batch.ray_address)
    except JobStateConflict as exc:  # another process has it: leave it alone
        print(f"pipeline run {argv[0]}: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except ClocheError as exc:
        print(f"pipeline run {argv[0]}: {exc}", file=sys.stderr)
        records.set_run_state(store, argv[0], "failed", error=f"{exc.code}: {exc.message}")
        return int(exc.exit_code)
    except Exception as exc:  # failed, not left running to be resumed forever
        log.exception("pipeline run %s failed unexpectedly", argv[0])
        records.set_run_state(store, argv[0], "failed", error=f"internal error: {exc!r}")
        return 1
    finally:
        store.close()
    print(f"pipeline run {run.id}: {run.state} {run.error}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main(sys.argv[1:]))
