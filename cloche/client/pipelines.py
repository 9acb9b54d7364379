"""Pipelines: register a file, run a pipeline, follow, cancel, retry and approve its runs.

The interface (`PipelinesAPI`) and its two forms side by side: in-process on CLOCHE_HOME's
store, and over a server's REST API. Either way, ``run`` with a Pipeline object runs it here,
in this process (as ``cloche.pipelines.run`` does); ``run`` with a registered pipeline's name
queues it for the server's `cloche up` to run.
"""

from __future__ import annotations

import builtins
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from cloche.client._http import API, HttpTransport
from cloche.client._local import LocalTransport
from cloche.client._paging import collect, http_page
from cloche.client._pipeline_schedules import HttpSchedules, LocalSchedules
from cloche.errors import Timeout
from cloche.pipelines.entities import PipelineRun, StepRecord
from cloche.pipelines.pipeline import Pipeline
from cloche.pipelines.registered import RegisteredPipeline
from cloche.pipelines.schedules import PipelineSchedule
from cloche.store.paging import Order

POLL_S = 0.5


class PipelinesAPI(Protocol):
    """Pipelines: reading needs the viewer role; running, cancelling, retrying, approving and
    scheduling need deployer (or publisher, or admin); registering a source, which the server
    then runs, needs publisher or admin."""

    def list(self) -> builtins.list[RegisteredPipeline]:
        """Registered pipelines, each at its newest version."""
        ...

    def register(self, target: str | Path) -> RegisteredPipeline:
        """Register ``FILE.py[:NAME]`` (a new version only when its source changed)."""
        ...

    def run(
        self,
        pipeline: Pipeline | str,
        params: dict[str, Any] | None = None,
        *,
        executor: str = "inprocess",
    ) -> PipelineRun:
        """A Pipeline object: run it here to its end. A name: queue the registered pipeline
        for the server and return the queued run (``wait`` follows it)."""
        ...

    def runs(
        self,
        *,
        pipeline: str | None = None,
        state: str | None = None,
        q: str | None = None,
        sort: str | None = None,
        order: Order | None = None,
        limit: int | None = 50,
        offset: int = 0,
    ) -> builtins.list[PipelineRun]:
        """Runs, newest first, without their steps; ``state="waiting"``: waiting for an
        approval; ``q`` searches pipeline names and run ids, ``sort`` is created or state."""
        ...

    def get(self, run_id: str) -> PipelineRun:
        """A run (its id or a unique prefix) with every step attempt."""
        ...

    def logs(self, run_id: str, step: str) -> builtins.list[StepRecord]:
        """Every attempt of ``step`` (``name`` or ``name[i]``) with its log and error."""
        ...

    def cancel(self, run_id: str) -> PipelineRun:
        """Cancel a run that has not ended (RunStateConflict once it has): the server's process
        running it stops with its running step, and no other step starts."""
        ...

    def retry(self, run_id: str) -> PipelineRun:
        """Queue a failed or cancelled run again; its succeeded steps are not run again."""
        ...

    def approve(
        self, run_id: str, step: str, *, approved: bool = True, comment: str = ""
    ) -> PipelineRun:
        """Approve (or reject, ``approved=False``) an approval step waiting for a decision."""
        ...

    def schedule(
        self,
        name: str,
        cron: str,
        params: dict[str, Any] | None = None,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        max_runs: int | None = None,
        max_concurrent: int | None = None,
        catch_up: bool = False,
    ) -> PipelineSchedule:
        """Queue runs of registered ``name`` at the times ``cron`` (five fields, UTC) names,
        for the scheduler of `cloche up`; ``params`` are checked now."""
        ...

    def schedules(self) -> builtins.list[PipelineSchedule]:
        """Every pipeline schedule."""
        ...

    def get_schedule(self, schedule_id: str) -> PipelineSchedule:
        """A schedule (its id or a unique prefix)."""
        ...

    def pause_schedule(self, schedule_id: str) -> PipelineSchedule:
        """Stop queueing runs."""
        ...

    def resume_schedule(self, schedule_id: str) -> PipelineSchedule:
        """Queue runs again from the next fire time."""
        ...

    def delete_schedule(self, schedule_id: str) -> None:
        """Delete a schedule; the runs it made stay."""
        ...

    def wait(self, run_id: str, *, timeout: float | None = None) -> PipelineRun:
        """Poll a run until it ends."""
        ...


class _Polling:
    def get(self, run_id: str) -> PipelineRun:
        raise NotImplementedError

    def wait(self, run_id: str, *, timeout: float | None = None) -> PipelineRun:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            found = self.get(run_id)
            if found.done:
                return found
            if deadline is not None and time.monotonic() > deadline:
                raise Timeout(
                    f"pipeline run {found.id} is still {found.state} after {timeout:g} s",
                    hint=f"`cloche pipelines runs show {found.id}` follows it",
                )
            time.sleep(POLL_S)


def _run_here(
    pipeline: Pipeline, params: dict[str, Any] | None, executor: str, local: LocalTransport
) -> PipelineRun:
    from cloche.pipelines.runner import run_pipeline

    return run_pipeline(
        local.store, pipeline, dict(params or {}), actor=local.actor, executor=executor
    )


class LocalPipelines(_Polling, LocalSchedules):
    def __init__(self, transport: LocalTransport) -> None:
        self._t = transport

    def list(self) -> builtins.list[RegisteredPipeline]:
        from cloche.pipelines import registered

        return registered.list_registered(self._t.store)

    def register(self, target: str | Path) -> RegisteredPipeline:
        from cloche.pipelines import loading, registered

        pipeline, source, file_name = loading.load_source(str(target))
        return registered.register(
            self._t.store, pipeline, source=source, file_name=file_name, actor=self._t.actor
        )

    def run(
        self,
        pipeline: Pipeline | str,
        params: dict[str, Any] | None = None,
        *,
        executor: str = "inprocess",
    ) -> PipelineRun:
        from cloche.pipelines import registered

        if isinstance(pipeline, Pipeline):
            return _run_here(pipeline, params, executor, self._t)
        return registered.queue_run(
            self._t.store, pipeline, dict(params or {}), actor=self._t.actor, executor=executor
        )

    def runs(
        self,
        *,
        pipeline: str | None = None,
        state: str | None = None,
        q: str | None = None,
        sort: str | None = None,
        order: Order | None = None,
        limit: int | None = 50,
        offset: int = 0,
    ) -> builtins.list[PipelineRun]:
        from cloche.pipelines import records

        return collect(
            lambda page: records.page_runs(self._t.store, page, pipeline=pipeline, state=state),
            q=q,
            sort=sort,
            order=order,
            limit=limit,
            offset=offset,
        )

    def get(self, run_id: str) -> PipelineRun:
        from cloche.pipelines import records

        return records.get_run(self._t.store, run_id)

    def logs(self, run_id: str, step: str) -> builtins.list[StepRecord]:
        from cloche.pipelines import records

        return records.step_attempts(self._t.store, run_id, step)[1]

    def cancel(self, run_id: str) -> PipelineRun:
        from cloche.pipelines import lifecycle

        return lifecycle.cancel_run(self._t.store, run_id, actor=self._t.actor)

    def retry(self, run_id: str) -> PipelineRun:
        from cloche.pipelines import lifecycle

        return lifecycle.retry_run(self._t.store, run_id, actor=self._t.actor)

    def approve(
        self, run_id: str, step: str, *, approved: bool = True, comment: str = ""
    ) -> PipelineRun:
        from cloche.pipelines import approvals

        return approvals.decide(
            self._t.store, run_id, step, approved=approved, actor=self._t.actor, comment=comment
        )


def _path(*parts: str) -> str:
    return f"{API}/pipelines" + "".join("/" + quote(p, safe="") for p in parts)


class HttpPipelines(_Polling, HttpSchedules):
    def __init__(self, transport: HttpTransport) -> None:
        self._t = transport

    def _run(self, method: str, path: str, **kwargs: Any) -> PipelineRun:
        return PipelineRun.model_validate(self._t.request(method, path, **kwargs).json())

    def list(self) -> builtins.list[RegisteredPipeline]:
        found = self._t.request("GET", _path()).json()
        return [RegisteredPipeline.model_validate(p) for p in found]

    def register(self, target: str | Path) -> RegisteredPipeline:
        from cloche.pipelines import loading

        # Loaded here, not on the server: the server never imports a pipeline's source.
        pipeline, source, file_name = loading.load_source(str(target))
        body = {
            "source": source,
            "file_name": file_name,
            "graph": pipeline.graph.model_dump(mode="json"),
        }
        response = self._t.request("POST", _path(), json=body)
        return RegisteredPipeline.model_validate(response.json())

    def run(
        self,
        pipeline: Pipeline | str,
        params: dict[str, Any] | None = None,
        *,
        executor: str = "inprocess",
    ) -> PipelineRun:
        if isinstance(pipeline, Pipeline):
            from cloche.config import Settings

            here = LocalTransport(Settings())
            try:
                return _run_here(pipeline, params, executor, here)
            finally:
                here.close()
        body = {"params": dict(params or {}), "executor": executor}
        return self._run("POST", _path(pipeline, "runs"), json=body)

    def runs(
        self,
        *,
        pipeline: str | None = None,
        state: str | None = None,
        q: str | None = None,
        sort: str | None = None,
        order: Order | None = None,
        limit: int | None = 50,
        offset: int = 0,
    ) -> builtins.list[PipelineRun]:
        filters = [("pipeline", pipeline), ("state", state)]
        return collect(
            lambda page: http_page(self._t, _path("runs"), page, PipelineRun, filters),
            q=q,
            sort=sort,
            order=order,
            limit=limit,
            offset=offset,
        )

    def get(self, run_id: str) -> PipelineRun:
        return self._run("GET", _path("runs", run_id))

    def logs(self, run_id: str, step: str) -> builtins.list[StepRecord]:
        found = self._t.request("GET", _path("runs", run_id, "steps", step, "logs")).json()
        return [StepRecord.model_validate(r) for r in found]

    def cancel(self, run_id: str) -> PipelineRun:
        return self._run("POST", _path("runs", run_id, "cancel"))

    def retry(self, run_id: str) -> PipelineRun:
        return self._run("POST", _path("runs", run_id, "retry"))

    def approve(
        self, run_id: str, step: str, *, approved: bool = True, comment: str = ""
    ) -> PipelineRun:
        body = {"approved": approved, "comment": comment}
        return self._run("POST", _path("runs", run_id, "steps", step, "approve"), json=body)
