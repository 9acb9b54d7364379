"""Registered pipelines, which the server runs: a pipeline's source file stored as a version
(a new one only when the source changed), and runs queued against a version.

The server never imports a registered file into its own workers: each queued run is run by a
child process of `cloche up` (cloche/pipelines/server_runs.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select

from cloche import audit
from cloche.errors import PipelineNotFound
from cloche.pipelines import records
from cloche.pipelines.entities import PipelineRun
from cloche.pipelines.executors import check_executor
from cloche.pipelines.graph import ParamSpec, PipelineGraph, check_graph
from cloche.pipelines.pipeline import Pipeline
from cloche.pipelines.values import run_params
from cloche.registry.refs import check_name
from cloche.store.store import Store
from cloche.store.tables import PipelineRow, PipelineRunRow


class RegisteredPipeline(BaseModel):
    name: str
    version: int
    file_name: str
    source_hash: str
    steps: int
    params: dict[str, ParamSpec] = {}
    created_at: datetime
    created_by: str = ""


def register(
    store: Store, pipeline: Pipeline, *, source: str, file_name: str, actor: str
) -> RegisteredPipeline:
    """Store ``source`` (the file defining ``pipeline``) as the pipeline's next version, unless
    its newest version has the same source hash."""
    return register_graph(store, pipeline.graph, source=source, file_name=file_name, actor=actor)


def register_graph(
    store: Store, graph: PipelineGraph, *, source: str, file_name: str, actor: str
) -> RegisteredPipeline:
    """``register`` for a graph a client built from ``source`` (the server never imports it
    in its workers); a graph that ``source`` does not define fails the runs queued against it,
    as the runner checks the source and graph before running."""
    check_name(graph.name)
    check_graph(graph)
    with store.transaction() as session:
        newest = _newest(session, graph.name)
        if newest is not None and newest.source_hash == graph.source_hash:
            return entity(newest)
        row = PipelineRow(
            name=graph.name,
            version=(newest.version + 1) if newest is not None else 1,
            source=source,
            file_name=file_name,
            source_hash=graph.source_hash,
            graph=graph.model_dump(mode="json"),
            created_by=actor,
        )
        session.add(row)
        audit.record(
            session,
            actor=actor,
            action="pipeline.register",
            resource_type="pipeline",
            resource=f"{row.name}:{row.version}",
            after={"source_hash": row.source_hash, "file": file_name},
        )
        session.flush()
        return entity(row)


def list_registered(store: Store) -> list[RegisteredPipeline]:
    newest = select(PipelineRow.name, func.max(PipelineRow.version).label("version")).group_by(
        PipelineRow.name
    )
    sub = newest.subquery()
    query = select(PipelineRow).join(
        sub, (PipelineRow.name == sub.c.name) & (PipelineRow.version == sub.c.version)
    )
    with store.transaction() as session:
        return [entity(row) for row in session.scalars(query.order_by(PipelineRow.name))]


def source_of(store: Store, name: str, version: int) -> tuple[str, str, str]:
    """The stored source, file name and source hash of ``name`` version ``version``."""
    with store.transaction() as session:
        row = session.scalars(
            select(PipelineRow).where(PipelineRow.name == name, PipelineRow.version == version)
        ).one_or_none()
        if row is None:
            raise PipelineNotFound(f"no pipeline {name!r} version {version}")
        return row.source, row.file_name, row.source_hash


def newest_graph(store: Store, name: str) -> PipelineGraph:
    with store.transaction() as session:
        row = _newest(session, name)
        if row is None:
            raise PipelineNotFound(
                f"no registered pipeline {name!r}",
                hint="register it with `cloche pipelines register FILE.py`",
            )
        return PipelineGraph.model_validate(row.graph)


def queue_run(
    store: Store,
    name: str,
    params: dict[str, Any],
    *,
    actor: str,
    executor: str = "inprocess",
    trigger: str | None = None,
) -> PipelineRun:
    """Queue a run of the newest version of ``name`` for the server's scheduler to start;
    ``trigger`` (``schedule:ID``, ``alert:ID``) says what queued it."""
    check_executor(executor)
    with store.transaction() as session:
        row = _newest(session, name)
        if row is None:
            raise PipelineNotFound(
                f"no registered pipeline {name!r}",
                hint="register it with `cloche pipelines register FILE.py`",
            )
        graph = PipelineGraph.model_validate(row.graph)
        version = row.version
    checked = run_params(graph, params)
    run = records.create_run(store, graph, checked, executor=executor, actor=actor)
    with store.transaction() as session:
        stored = session.get(PipelineRunRow, run.id)
        assert stored is not None
        stored.state, stored.pipeline_version, stored.trigger = "queued", version, trigger
    return records.get_run(store, run.id)


def _newest(session: Any, name: str) -> PipelineRow | None:
    query = (
        select(PipelineRow)
        .where(PipelineRow.name == name)
        .order_by(PipelineRow.version.desc())
        .limit(1)
    )
    row: PipelineRow | None = session.scalars(query).one_or_none()
    return row


def entity(row: PipelineRow) -> RegisteredPipeline:
    return RegisteredPipeline(
        name=row.name,
        version=row.version,
        file_name=row.file_name,
        source_hash=row.source_hash,
        steps=len(row.graph.get("tasks", [])),
        params=row.graph.get("params", {}),
        created_at=row.created_at,
        created_by=row.created_by,
    )
