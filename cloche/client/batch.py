"""Batch prediction: jobs over files or folders, their progress, and schedules.

The interface (`OnProgress`) and its two forms side by side: in-process on
CLOCHE_HOME's store, and over a server's REST API.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from cloche.batch.entities import BatchJob, BatchSchedule
from cloche.batch.places import Places
from cloche.batch.spec import JobSpec
from cloche.client._http import API, HttpTransport
from cloche.client._local import LocalTransport
from cloche.client._paging import collect, http_page
from cloche.client._paths import job_paths
from cloche.errors import ClocheError, Timeout
from cloche.store.paging import Order

OnProgress = Callable[[BatchJob], None] | None


POLL_S = 0.5


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class BatchAPI(Protocol):
    """Batch prediction. ``spec`` keywords are those of `cloche batch run`: input, output,
    input_format, output_format, id_column, passthrough, workers, chunk_rows, max_error_rate,
    overwrite, engine (``"ray"`` runs on the cluster of the CLOCHE_BATCH__RAY_ADDRESS setting).

    Over HTTP, and for jobs queued for `cloche up` or scheduled, paths must lie in the
    server's CLOCHE_BATCH__ALLOWED_DIRS (links resolved) or under CLOCHE_BATCH__ALLOWED_URLS
    (DestinationRefused otherwise); a job run in-process in the foreground is not confined."""

    def run(
        self,
        model: str,
        *,
        input: str,
        output: str,
        on_progress: OnProgress = None,
        **spec: Any,
    ) -> BatchJob:
        """Run a job to its end and return it, whatever state it ended in.

        In-process the job runs here; over HTTP the server runs it and this polls it.
        """
        ...

    def submit(self, model: str, *, input: str, output: str, **spec: Any) -> BatchJob:
        """Queue a job for `cloche up` to run; returns at once."""
        ...

    def wait(
        self,
        job_id: str,
        *,
        on_progress: OnProgress = None,
        timeout: float | None = None,
    ) -> BatchJob:
        """Poll a job until it ends."""
        ...

    def list(
        self,
        *,
        state: str | None = None,
        schedule_id: str | None = None,
        q: str | None = None,
        sort: str | None = None,
        order: Order | None = None,
        limit: int | None = 50,
        offset: int = 0,
    ) -> list[BatchJob]:
        """Jobs, newest first; ``q`` searches ids and model versions, ``sort`` is created
        (default) or state; ``limit`` None means all."""
        ...

    def get(self, job_id: str) -> BatchJob: ...

    def cancel(self, job_id: str) -> BatchJob: ...

    def resume(
        self,
        job_id: str,
        *,
        wait: bool = True,
        on_progress: OnProgress = None,
    ) -> BatchJob:
        """Continue a stopped job from its last finished chunk."""
        ...

    def schedule(
        self, model: str, *, cron: str, input: str, output: str, **spec: Any
    ) -> BatchSchedule:
        """Run the job on a cron schedule (UTC) in `cloche up`, each run in a dated folder."""
        ...

    def schedules(self) -> builtins.list[BatchSchedule]: ...

    def get_schedule(self, schedule_id: str) -> BatchSchedule: ...

    def pause_schedule(self, schedule_id: str) -> BatchSchedule: ...

    def resume_schedule(self, schedule_id: str) -> BatchSchedule: ...

    def delete_schedule(self, schedule_id: str) -> None: ...


def job_spec(input: str, output: str, spec: dict[str, Any], *, here: bool = True) -> JobSpec:
    """The spec to send, its paths made absolute and checked (cloche/client/_paths.py)."""
    unknown = set(spec) - set(JobSpec.__dataclass_fields__)
    if unknown:
        known = ", ".join(sorted(set(JobSpec.__dataclass_fields__) - {"input", "output"}))
        raise TypeError(f"unknown batch option(s) {', '.join(sorted(unknown))}; known: {known}")
    input, output = job_paths(str(input), str(output), here=here)
    return JobSpec.from_dict({"input": input, "output": output, **spec})


class _Polling:
    """``wait`` and ``run`` built on ``get``, for whichever transport runs the job elsewhere."""

    def get(self, job_id: str) -> BatchJob:
        raise NotImplementedError

    def wait(
        self, job_id: str, *, on_progress: OnProgress = None, timeout: float | None = None
    ) -> BatchJob:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if on_progress is not None:
                on_progress(job)
            if job.done:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise Timeout(
                    f"batch job {job_id} is still {job.state} after {timeout:g} s",
                    hint=f"`cloche batch show {job_id}` follows it",
                )
            time.sleep(POLL_S)


class LocalBatch(_Polling):
    """In-process: a job run here (``run``, ``resume``) reads and writes as the user running it,
    unconfined; one queued for `cloche up` (``submit``) or scheduled is confined to the places
    this client's settings allow, as the server will confine it (cloche/batch/service.py)."""

    def __init__(self, transport: LocalTransport) -> None:
        self._t = transport

    def _places(self) -> Places:
        from cloche.batch.places import Places

        return Places.from_settings(self._t.settings)

    def run(
        self, model: str, *, input: str, output: str, on_progress: OnProgress = None, **spec: Any
    ) -> BatchJob:
        from cloche.batch import service

        job = service.submit(
            self._t.store, model_ref=model, spec=job_spec(input, output, spec), actor=self._t.actor
        )
        return self._execute(job.id, on_progress)

    def _execute(self, job_id: str, on_progress: OnProgress) -> BatchJob:
        from cloche.batch import service

        try:
            return service.execute(
                self._t.store,
                job_id,
                on_progress=on_progress,
                ray_address=self._t.settings.batch.ray_address,
            )
        except ClocheError:  # recorded on the job, as the server's runner records it
            return service.get_job(self._t.store, job_id)

    def submit(self, model: str, *, input: str, output: str, **spec: Any) -> BatchJob:
        from cloche.batch import service

        return service.submit(
            self._t.store,
            model_ref=model,
            spec=job_spec(input, output, spec),
            actor=self._t.actor,
            places=self._places(),
        )

    def list(
        self,
        *,
        state: str | None = None,
        schedule_id: str | None = None,
        q: str | None = None,
        sort: str | None = None,
        order: Order | None = None,
        limit: int | None = 50,
        offset: int = 0,
    ) -> list[BatchJob]:
        from cloche.batch import listing

        return collect(
            lambda page: listing.page_jobs(
                self._t.store, page, state=state, schedule_id=schedule_id
            ),
            q=q,
            sort=sort,
            order=order,
            limit=limit,
            offset=offset,
        )

    def get(self, job_id: str) -> BatchJob:
        from cloche.batch import service

        return service.get_job(self._t.store, job_id)

    def cancel(self, job_id: str) -> BatchJob:
        from cloche.batch import service

        return service.cancel(self._t.store, job_id, actor=self._t.actor)

    def resume(self, job_id: str, *, wait: bool = True, on_progress: OnProgress = None) -> BatchJob:
        from cloche.batch import service

        job = service.request_resume(self._t.store, job_id, actor=self._t.actor)
        return self._execute(job.id, on_progress) if wait else job

    def schedule(
        self, model: str, *, cron: str, input: str, output: str, **spec: Any
    ) -> BatchSchedule:
        from cloche.batch import schedules

        return schedules.create_schedule(
            self._t.store,
            model_ref=model,
            spec=job_spec(input, output, spec),
            cron=cron,
            places=self._places(),
            actor=self._t.actor,
        )

    def schedules(self) -> builtins.list[BatchSchedule]:
        from cloche.batch import schedules

        return schedules.list_schedules(self._t.store)

    def get_schedule(self, schedule_id: str) -> BatchSchedule:
        from cloche.batch import schedules

        return schedules.get_schedule(self._t.store, schedule_id)

    def pause_schedule(self, schedule_id: str) -> BatchSchedule:
        from cloche.batch import schedules

        return schedules.set_enabled(self._t.store, schedule_id, False, actor=self._t.actor)

    def resume_schedule(self, schedule_id: str) -> BatchSchedule:
        from cloche.batch import schedules

        return schedules.set_enabled(self._t.store, schedule_id, True, actor=self._t.actor)

    def delete_schedule(self, schedule_id: str) -> None:
        from cloche.batch import schedules

        schedules.delete_schedule(self._t.store, schedule_id, actor=self._t.actor)


def _job_path(job_id: str, *rest: str) -> str:

    return f"{API}/batch-jobs/" + "/".join(quote(p, safe="") for p in (job_id, *rest))


def _schedule_path(schedule_id: str = "", *rest: str) -> str:

    parts = [quote(p, safe="") for p in (schedule_id, *rest) if p]
    return f"{API}/batch-schedules" + "".join("/" + p for p in parts)


class HttpBatch(_Polling):
    def __init__(self, transport: HttpTransport) -> None:
        self._t = transport
        # A server on this machine reads the files the user names here; a remote one its own.
        self._here = urlsplit(transport.url).hostname in LOOPBACK_HOSTS

    def _job(self, method: str, path: str, **kwargs: Any) -> BatchJob:
        return BatchJob.model_validate(self._t.request(method, path, **kwargs).json())

    def _schedule(self, method: str, path: str, **kwargs: Any) -> BatchSchedule:
        return BatchSchedule.model_validate(self._t.request(method, path, **kwargs).json())

    def submit(self, model: str, *, input: str, output: str, **spec: Any) -> BatchJob:
        body = {"model": model, **job_spec(input, output, spec, here=self._here).to_dict()}
        return self._job("POST", _job_path("").rstrip("/"), json=body)

    def run(
        self, model: str, *, input: str, output: str, on_progress: OnProgress = None, **spec: Any
    ) -> BatchJob:
        job = self.submit(model, input=input, output=output, **spec)
        return self.wait(job.id, on_progress=on_progress)

    def list(
        self,
        *,
        state: str | None = None,
        schedule_id: str | None = None,
        q: str | None = None,
        sort: str | None = None,
        order: Order | None = None,
        limit: int | None = 50,
        offset: int = 0,
    ) -> list[BatchJob]:
        filters = [("state", state), ("schedule_id", schedule_id)]
        path = _job_path("").rstrip("/")
        return collect(
            lambda page: http_page(self._t, path, page, BatchJob, filters),
            q=q,
            sort=sort,
            order=order,
            limit=limit,
            offset=offset,
        )

    def get(self, job_id: str) -> BatchJob:
        return self._job("GET", _job_path(job_id))

    def cancel(self, job_id: str) -> BatchJob:
        return self._job("POST", _job_path(job_id, "cancel"))

    def resume(self, job_id: str, *, wait: bool = True, on_progress: OnProgress = None) -> BatchJob:
        job = self._job("POST", _job_path(job_id, "resume"))
        return self.wait(job.id, on_progress=on_progress) if wait else job

    def schedule(
        self, model: str, *, cron: str, input: str, output: str, **spec: Any
    ) -> BatchSchedule:
        spec_data = job_spec(input, output, spec, here=self._here).to_dict()
        body = {"model": model, "cron": cron, **spec_data}
        return self._schedule("POST", _schedule_path(), json=body)

    def schedules(self) -> builtins.list[BatchSchedule]:
        found = self._t.request("GET", _schedule_path()).json()
        return [BatchSchedule.model_validate(s) for s in found]

    def get_schedule(self, schedule_id: str) -> BatchSchedule:
        return self._schedule("GET", _schedule_path(schedule_id))

    def pause_schedule(self, schedule_id: str) -> BatchSchedule:
        return self._schedule("POST", _schedule_path(schedule_id, "pause"))

    def resume_schedule(self, schedule_id: str) -> BatchSchedule:
        return self._schedule("POST", _schedule_path(schedule_id, "resume"))

    def delete_schedule(self, schedule_id: str) -> None:
        self._t.request("DELETE", _schedule_path(schedule_id))
