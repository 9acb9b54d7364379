"""Batch jobs: submit, run, list, show, cancel, resume. The one place each behaviour lives.

A job's row in the metadata store holds its spec, state and progress; its output folder holds
the truth about which chunks are done (see engine_local.py), so a job killed mid-run resumes from
its last finished chunk whichever process runs it next.

Where a job may read and write (cloche/batch/places.py) is checked here, for every surface:
``submit`` and ``execute`` take ``places``, and confine the job when given. The rule is who
reads the files. A job the server runs, it runs for someone else: jobs sent over the API, any job
queued for `cloche up` (the in-process SDK's ``submit`` included) and every schedule (checked
when saved and again when each run is queued and executed) are confined by the server's
settings. A job the in-process client runs in the foreground (``run``, ``resume`` with waiting)
reads and writes as the user who runs it, who owns the store and can open those files anyway:
it is not confined, so `cloche batch run --input /data/x.parquet` works from any folder.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session

from cloche import audit
from cloche.batch.entities import ACTIVE_STATES, FINAL_STATES, BatchJob
from cloche.batch.ids import find_row
from cloche.batch.places import Places
from cloche.batch.plan import check_spec, plan_path
from cloche.batch.spec import JobOutcome, JobSpec, ModelSource, Progress
from cloche.errors import BatchJobNotFound, ClocheError, JobStateConflict
from cloche.lineage.links import record as record_lineage
from cloche.processes import pid_alive
from cloche.registry.refs import parse_ref
from cloche.registry.service import artifact_location, resolve_version_row
from cloche.store.paging import collect
from cloche.store.store import Store
from cloche.store.tables import BatchJobRow, utcnow

ProgressCallback = Callable[[BatchJob], None]
HEARTBEAT_S = 1.0  # progress and heartbeat writes, at most this often
STALE_AFTER_S = 30.0  # a running job silent this long has lost its runner


def new_job_id() -> str:
    return "bj_" + secrets.token_hex(5)


def submit(
    store: Store,
    *,
    model_ref: str,
    spec: JobSpec,
    actor: str = "local",
    schedule_id: str | None = None,
    places: Places | None = None,
) -> BatchJob:
    """Store a queued job after checking its spec, that the model exists and, with ``places``,
    that its paths lie where the server may read and write (see the module docstring)."""
    check_spec(spec)
    if places is not None:
        places.check_spec(spec)
    with store.transaction() as session:
        version = resolve_version_row(session, parse_ref(model_ref))
        row = BatchJobRow(
            id=new_job_id(),
            model_ref=model_ref,
            model_version=f"{version.model.name}:{version.version}",
            model_sha256=version.sha256,
            spec=spec.to_dict(),
            state="queued",
            progress={},
            message="",
            cancel_requested=False,
            schedule_id=schedule_id,
            created_by=actor,
        )
        session.add(row)
        session.flush()
        job = entity(row)
        audit.record(
            session,
            actor=actor,
            action="batch.submit",
            resource_type="batch_job",
            resource=row.id,
            after={"model": job.model_version, "input": spec.input, "output": spec.output},
        )
        record_lineage(session, "batch_job", row.id, "created", job.model_version)
        return job


def run(
    store: Store,
    *,
    model_ref: str,
    spec: JobSpec,
    actor: str = "local",
    on_progress: ProgressCallback | None = None,
    ray_address: str | None = None,
) -> BatchJob:
    """Submit a job and run it here, in the foreground (the CLI and the in-process SDK), as the
    user who runs it: not confined (see the module docstring)."""
    job = submit(store, model_ref=model_ref, spec=spec, actor=actor)
    return execute(store, job.id, on_progress=on_progress, ray_address=ray_address)


def _row(session: Session, job_id: str) -> BatchJobRow:
    missing = BatchJobNotFound(
        f"batch job {job_id!r} does not exist", hint="`cloche batch list` shows the jobs"
    )
    return find_row(session, BatchJobRow, BatchJobRow.id, job_id, missing=missing)


def entity(row: BatchJobRow) -> BatchJob:
    return BatchJob(
        id=row.id,
        model_ref=row.model_ref,
        model_version=row.model_version,
        model_sha256=row.model_sha256,
        state=row.state,
        spec=row.spec,
        progress=row.progress or {},
        message=row.message,
        cancel_requested=row.cancel_requested,
        schedule_id=row.schedule_id,
        created_at=audit.as_utc(row.created_at),
        started_at=audit.as_utc(row.started_at) if row.started_at else None,
        finished_at=audit.as_utc(row.finished_at) if row.finished_at else None,
        created_by=row.created_by,
    )


def get_job(store: Store, job_id: str) -> BatchJob:
    with store.transaction() as session:
        return entity(_row(session, job_id))


def list_jobs(
    store: Store, *, state: str | None = None, schedule_id: str | None = None, limit: int = 50
) -> list[BatchJob]:
    """The newest jobs first: the first pages of ``listing.page_jobs``."""
    from cloche.batch.listing import page_jobs  # it builds on this module's entity()

    return collect(
        lambda page: page_jobs(store, page, state=state, schedule_id=schedule_id), limit=limit
    )


def runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class HasRunner(Protocol):
    """A row some process runs (a batch job, a pipeline run): who, and when it last said so."""

    runner: str | None
    heartbeat_at: datetime | None


def runner_alive(row: HasRunner, *, now_s: float | None = None) -> bool:
    """Whether the process running ``row`` still runs it: its pid (same host) and heartbeat."""
    if row.runner is None or row.heartbeat_at is None:
        return False
    host, _, pid = row.runner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid)):
        return False
    now = utcnow() if now_s is None else audit.as_utc(row.heartbeat_at) + timedelta(seconds=now_s)
    return (now - audit.as_utc(row.heartbeat_at)).total_seconds() < STALE_AFTER_S


def cancel(store: Store, job_id: str, *, actor: str = "local") -> BatchJob:
    """A queued job (or one whose runner died) stops at once; a running one at its next chunk."""
    with store.transaction() as session:
        row = _row(session, job_id)
        if row.state in FINAL_STATES:
            raise JobStateConflict(
                f"batch job {row.id} already ended ({row.state}); there is nothing to cancel"
            )
        if row.state == "queued" or not runner_alive(row):
            row.state, row.finished_at = "cancelled", utcnow()
            row.message = "cancelled before it finished; `cloche batch resume` continues it"
        row.cancel_requested = True
        audit.record(
            session, actor=actor, action="batch.cancel", resource_type="batch_job", resource=row.id
        )
        return entity(row)


def check_resumable(row: BatchJobRow) -> None:
    if row.state in ("succeeded", "partially_succeeded"):
        raise JobStateConflict(
            f"batch job {row.id} already {row.state.replace('_', ' ')}; nothing to resume",
            hint="run a new job with `cloche batch run`",
        )
    if row.state == "running" and runner_alive(row):
        raise JobStateConflict(
            f"batch job {row.id} is still running (in {row.runner})",
            hint=f"wait for it, or `cloche batch cancel {row.id}` first",
        )


def request_resume(store: Store, job_id: str, *, actor: str = "local") -> BatchJob:
    """Queue a stopped job again; its runner continues from the last finished chunk."""
    with store.transaction() as session:
        row = _row(session, job_id)
        if row.state != "queued":
            check_resumable(row)
        row.state, row.cancel_requested, row.finished_at = "queued", False, None
        row.runner, row.message = None, "queued to resume"
        audit.record(
            session, actor=actor, action="batch.resume", resource_type="batch_job", resource=row.id
        )
        return entity(row)


def resume(
    store: Store,
    job_id: str,
    *,
    actor: str = "local",
    on_progress: ProgressCallback | None = None,
    ray_address: str | None = None,
) -> BatchJob:
    """Resume a stopped job here, in the foreground, as the user who runs it."""
    job = request_resume(store, job_id, actor=actor)
    return execute(store, job.id, on_progress=on_progress, ray_address=ray_address)


def _claim(store: Store, job_id: str) -> tuple[BatchJob, bool]:
    """Mark the job as run by this process; also say whether it ran before (so resumes)."""
    with store.transaction() as session:
        row = _row(session, job_id)
        if row.state != "queued":
            raise JobStateConflict(
                f"batch job {row.id} is {row.state}, not queued",
                hint=f"`cloche batch resume {row.id}` continues a stopped job",
            )
        resumed = row.started_at is not None
        row.state, row.runner, row.heartbeat_at = "running", runner_name(), utcnow()
        row.started_at = row.started_at or utcnow()
        row.message = ""
        return entity(row), resumed


def model_source(store: Store, version_ref: str) -> ModelSource:
    version, key = artifact_location(store, version_ref)
    folder = store.artifacts.local_dir(key, version.files)  # verifies every file's hash
    return ModelSource(
        ref=version.ref,
        framework=version.framework,
        sha256=version.sha256,
        artifact_dir=str(folder),
        signature=version.signature,
    )


def execute(
    store: Store,
    job_id: str,
    *,
    on_progress: ProgressCallback | None = None,
    places: Places | None = None,
    ray_address: str | None = None,
) -> BatchJob:
    """Run a queued job in this process until it ends; its state records how it ended.

    With ``places`` (the server's runner), the output and every file the job planned to read
    must lie there. ``ray_address`` is the server's setting for ``engine="ray"`` jobs.
    A job that cannot start (bad schema, unreadable input, existing output, a refused path)
    ends failed with the reason, and the error is raised again for the caller to show.
    """
    job, resumed = _claim(store, job_id)
    spec = JobSpec.from_dict(job.spec)
    tracker = _Tracker(store, job, on_progress)
    try:
        if places is not None:
            places.check_spec(spec)
        source = model_source(store, job.model_version)
        outcome = _engine_run(spec, source, resumed, tracker, places, ray_address)
    except ClocheError as exc:
        text = exc.message + (f"; {exc.hint}" if exc.hint else "")
        _finish(store, job.id, "failed", text, tracker.last)
        raise
    except KeyboardInterrupt:  # Ctrl-C in the CLI: finished chunks stay, resume continues
        _finish(
            store, job.id, "cancelled", f"interrupted; `cloche batch resume {job.id}`", tracker.last
        )
        raise
    except Exception as exc:
        _finish(store, job.id, "failed", f"internal error: {exc!r}", tracker.last)
        raise
    return _finish(store, job.id, outcome.state, _summary(outcome), tracker.last)


def _engine_run(
    spec: JobSpec,
    source: ModelSource,
    resumed: bool,
    tracker: _Tracker,
    places: Places | None,
    ray_address: str | None,
) -> JobOutcome:
    # A job that stopped before its plan was written (say, on a bad schema) starts afresh.
    resume = resumed and plan_path(spec.output).is_file()
    if spec.engine == "ray":
        from cloche.batch import engine_ray

        return engine_ray.run(
            spec,
            source,
            progress=tracker.update,
            should_stop=tracker.should_stop,
            resume=resume,
            places=places,
            address=ray_address,
        )
    from cloche.batch import engine_local

    plan = engine_local.prepare(spec, source, resume=resume, places=places)
    return engine_local.execute(
        plan, spec, source, progress=tracker.update, should_stop=tracker.should_stop
    )


def _summary(outcome: JobOutcome) -> str:
    if outcome.message:
        return outcome.message
    files = len(outcome.output_files)
    text = f"{outcome.rows_scored:,} rows scored into {files} file{'s' * (files != 1)}"
    if outcome.error_rows:
        text += f"; {outcome.error_rows:,} rows could not be scored (see errors-*.jsonl)"
    return text


def _finish(
    store: Store, job_id: str, state: str, message: str, progress: dict[str, Any] | None
) -> BatchJob:
    with store.transaction() as session:
        row = _row(session, job_id)
        row.state, row.message, row.finished_at = state, message, utcnow()
        row.heartbeat_at = utcnow()
        if progress is not None:
            row.progress = progress
        return entity(row)


class _Tracker:
    """Writes progress and a heartbeat to the store at most once a second; reads cancel."""

    def __init__(self, store: Store, job: BatchJob, on_progress: ProgressCallback | None) -> None:
        self.store = store
        self.job = job
        self.on_progress = on_progress
        self.last: dict[str, Any] | None = None
        self._written = 0.0
        self._checked = 0.0
        self._stop = False

    def update(self, progress: Progress) -> None:
        self.last = progress.to_dict()
        now = time.monotonic()
        if now - self._written >= HEARTBEAT_S or progress.chunks_done >= progress.chunks_total:
            self._written = now
            with self.store.transaction() as session:
                row = _row(session, self.job.id)
                row.progress, row.heartbeat_at = self.last, utcnow()
        if self.on_progress is not None:
            self.on_progress(self.job.model_copy(update={"progress": self.last}))

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self._stop and now - self._checked >= HEARTBEAT_S:
            self._checked = now
            with self.store.transaction() as session:
                self._stop = bool(_row(session, self.job.id).cancel_requested)
        return self._stop


def is_active(job: BatchJob) -> bool:
    return job.state in ACTIVE_STATES
