"""The store's record of pipeline runs: one row per run, one per step attempt."""

from __future__ import annotations

import secrets
from typing import Any, cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.orm import Session, defer

from cloche.batch.ids import find_row
from cloche.errors import PipelineRunNotFound, StepNotFound
from cloche.pipelines.entities import RUN_STATES, PipelineRun, StepRecord, step_key
from cloche.pipelines.graph import PipelineGraph
from cloche.store import paging
from cloche.store.paging import Page, PageRequest
from cloche.store.store import Store
from cloche.store.tables import PipelineRunRow, PipelineStepRow, utcnow


def new_run_id() -> str:
    return "pr_" + secrets.token_hex(6)


def create_run(
    store: Store, graph: PipelineGraph, params: dict[str, Any], *, executor: str, actor: str
) -> PipelineRun:
    with store.transaction() as session:
        row = PipelineRunRow(
            id=new_run_id(),
            pipeline=graph.name,
            source_hash=graph.source_hash,
            graph=graph.model_dump(mode="json"),
            params=params,
            state="pending",
            executor=executor,
            error="",
            created_by=actor,
        )
        session.add(row)
        session.flush()
        return entity(session, row)


def get_run(store: Store, run_id: str) -> PipelineRun:
    with store.transaction() as session:
        return entity(session, find(session, run_id))


def run_state(store: Store, run_id: str) -> str:
    with store.transaction() as session:
        state = session.scalars(select(PipelineRunRow.state).where(PipelineRunRow.id == run_id))
        return str(state.one())


def run_graph(store: Store, run_id: str) -> PipelineGraph:
    with store.transaction() as session:
        return PipelineGraph.model_validate(find(session, run_id).graph)


def list_runs(
    store: Store, *, pipeline: str | None = None, state: str | None = None, limit: int = 50
) -> list[PipelineRun]:
    """The newest runs first, without their steps: the first pages of ``page_runs``."""
    return paging.collect(
        lambda page: page_runs(store, page, pipeline=pipeline, state=state), limit=limit
    )


def set_run_state(store: Store, run_id: str, state: str, *, error: str = "") -> None:
    with store.transaction() as session:
        row = find(session, run_id)
        if row.state == "cancelled":  # a runner that has not yet noticed its cancel keeps it
            return
        row.state = state
        row.error = error
        if state == "running" and row.started_at is None:
            row.started_at = utcnow()
        if state in ("succeeded", "failed", "cancelled"):
            row.ended_at = utcnow()


def record_step(
    store: Store, run_id: str, record: StepRecord, *, cache_key: str | None, new: bool = False
) -> None:
    """Insert or update the attempt ``record`` names (run, step, iteration, attempt); ``new``:
    an attempt not recorded yet, inserted without trying an update first.

    Plain statements, not the ORM's load-then-flush: this runs twice per step attempt."""
    steps = cast(Table, PipelineStepRow.__table__)
    values = {
        "state": record.state,
        "cache_key": cache_key,
        "cached_from": record.cached_from,
        "inputs": record.inputs,
        "outputs": record.outputs,
        "error": record.error,
        "log": record.log,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
    }
    attempt = {
        "run_id": run_id,
        "step": record.step,
        "iteration": record.iteration,
        "attempt": record.attempt,
    }
    where = [steps.c[name] == value for name, value in attempt.items()]
    with store.transaction() as session:
        if not new:
            updated = session.execute(update(steps).where(*where).values(values))
            new = updated.rowcount == 0  # type: ignore[attr-defined]
        if new:
            session.execute(insert(steps).values(attempt | values))


def cached_outputs(store: Store, cache_key: str) -> tuple[str, dict[str, Any]] | None:
    """The newest succeeded attempt with this key: its run and its outputs."""
    query = (
        select(PipelineStepRow)
        .where(PipelineStepRow.cache_key == cache_key, PipelineStepRow.state == "succeeded")
        .order_by(PipelineStepRow.id.desc())
        .limit(1)
    )
    with store.transaction() as session:
        row = session.scalars(query).one_or_none()
        return (row.run_id, dict(row.outputs)) if row is not None else None


def step_attempts(store: Store, run_id: str, step: str) -> tuple[str, list[StepRecord]]:
    """The run's full id and every attempt of ``step`` (``name`` or ``name[i]``), in order."""
    found = get_run(store, run_id)
    name, iteration = step_key(step)
    attempts = [r for r in found.steps if r.step == name and r.iteration == iteration]
    if not attempts:
        raise StepNotFound(
            f"run {found.id} has no step {step!r}",
            hint=f"its steps: {', '.join(found.step_states()) or '(none)'}",
        )
    return found.id, attempts


def find(session: Session, run_id: str) -> PipelineRunRow:
    """The run ``run_id`` names, in full or by a unique prefix as batch jobs are."""
    missing = PipelineRunNotFound(
        f"no pipeline run {run_id!r}", hint="list runs with `cloche pipelines runs`"
    )
    return find_row(session, PipelineRunRow, PipelineRunRow.id, run_id, missing=missing)


def entity(session: Session, row: PipelineRunRow, *, steps: bool = True) -> PipelineRun:
    records: list[StepRecord] = []
    if steps:
        query = (
            select(PipelineStepRow)
            .where(PipelineStepRow.run_id == row.id)
            .order_by(PipelineStepRow.id)
        )
        records = [
            StepRecord(
                step=s.step,
                iteration=s.iteration,
                attempt=s.attempt,
                state=s.state,
                cached_from=s.cached_from,
                inputs=s.inputs,
                outputs=s.outputs,
                error=s.error,
                log=s.log,
                started_at=s.started_at,
                ended_at=s.ended_at,
            )
            for s in session.scalars(query)
        ]
    return PipelineRun(
        id=row.id,
        pipeline=row.pipeline,
        source_hash=row.source_hash,
        params=row.params,
        state=row.state,
        executor=row.executor,
        error=row.error,
        created_at=row.created_at,
        started_at=row.started_at,
        ended_at=row.ended_at,
        created_by=row.created_by,
        trigger=row.trigger or "",
        steps=records,
        graph=row.graph if steps else {},
    )


RUNS = paging.Listing(
    name="pipeline runs",
    sorts={"created": PipelineRunRow.created_at, "state": PipelineRunRow.state},
    default="created",
    default_order="desc",
    tiebreak=PipelineRunRow.id,
)


def page_runs(
    store: Store,
    request: PageRequest,
    *,
    pipeline: str | None = None,
    state: str | None = None,
) -> Page[PipelineRun]:
    """Runs, newest first by default; ``state="waiting"`` are those waiting for an approval,
    ``q`` searches the pipeline name and the run id. Two statements; neither steps nor the
    stored graph (about 15 KB a run, decoded for nothing) are loaded."""
    query = select(PipelineRunRow).options(defer(PipelineRunRow.graph, raiseload=True))
    if pipeline is not None:
        query = query.where(PipelineRunRow.pipeline == pipeline)
    if paging.one_of("state", state, RUN_STATES) is not None:
        query = query.where(PipelineRunRow.state == state)
    query = paging.search(query, request, PipelineRunRow.pipeline, PipelineRunRow.id)
    with store.transaction() as session:
        return paging.fetch(
            session,
            query,
            request,
            RUNS,
            lambda rows: [entity(session, r[0], steps=False) for r in rows],
        )
