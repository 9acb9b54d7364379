"""The lineage of a model version, endpoint, batch job or step artifact, both ways: the steps
that made it (with their inputs and, recursively, the steps that made those), and what it went
on to make (the steps that took it as an input, the endpoints serving it, the jobs scoring with
it, and what each of those made)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloche.lineage.entities import Lineage, Product, StepInput, StepOrigin
from cloche.lineage.subjects import last_attempt, resolve
from cloche.pipelines.graph import Argument, PipelineGraph, TaskSpec
from cloche.registry.refs import parse_ref
from cloche.registry.service import resolve_version_row
from cloche.store.store import Store
from cloche.store.tables import (
    BatchJobRow,
    DeploymentRow,
    EndpointRow,
    LineageRow,
    PipelineRunRow,
)

MAX_DEPTH = 32  # a pipeline is acyclic; this only bounds a pathological graph's answer


def get_lineage(store: Store, ref: str) -> Lineage:
    """Where ``ref`` came from and what it made. A NotFound when ``ref`` names nothing."""
    with store.transaction() as session:
        kind, subject = resolve(session, ref)
        if kind == "artifact":
            run_id, step, output = subject.split("/")
            made_by = [_origin(session, run_id, step, "output", output, depth=0)]
            made = _consumers(session, run_id, step, output, depth=0)
        else:
            made_by = [
                _origin(session, link.run_id, link.step, link.relation, link.target, depth=0)
                for link in _links(session, kind, subject)
            ]
            made = _made(session, kind, subject, made_by)
        note = "" if made_by else f"{subject} was not made or changed by a pipeline run"
        return Lineage(ref=ref, kind=kind, id=subject, made_by=made_by, made=made, note=note)


def _links(session: Session, kind: str, subject: str) -> list[LineageRow]:
    query = select(LineageRow).where(
        LineageRow.subject_kind == kind, LineageRow.subject_id == subject
    )
    return list(session.scalars(query.order_by(LineageRow.id)))


def _graph(session: Session, run_id: str) -> tuple[str, PipelineGraph]:
    run = session.get(PipelineRunRow, run_id)
    if run is None:  # the link's foreign key keeps this from happening
        return "", PipelineGraph.model_validate({"name": "", "source_hash": "", "tasks": []})
    return run.pipeline, PipelineGraph.model_validate(run.graph)


def _task(graph: PipelineGraph, label: str) -> TaskSpec | None:
    name = label.partition("[")[0]
    return next((t for t in graph.tasks if t.id == name), None)


def _origin(
    session: Session, run_id: str, label: str, relation: str, target: str, *, depth: int
) -> StepOrigin:
    pipeline, graph = _graph(session, run_id)
    attempt = last_attempt(session, run_id, label)
    task = _task(graph, label)
    inputs = []
    if task is not None and attempt is not None and depth < MAX_DEPTH:
        for name, arg in task.arguments.items():
            inputs.append(_input(session, run_id, label, name, arg, attempt.inputs, depth))
    return StepOrigin(
        run_id=run_id,
        pipeline=pipeline,
        step=label,
        relation=relation,
        target=target,
        cached_from=attempt.cached_from if attempt is not None else None,
        inputs=inputs,
    )


def _input(
    session: Session,
    run_id: str,
    label: str,
    name: str,
    arg: Argument,
    values: dict[str, object],
    depth: int,
) -> StepInput:
    value = values.get(name)
    if arg.kind != "output" or not arg.task:
        source = {"constant": "constant", "param": f"parameter {arg.name}"}.get(arg.kind)
        return StepInput(name=name, value=value, source=source or "loop item")
    producer = _same_item(session, run_id, arg.task, label)
    made_by = _origin(session, run_id, producer, "output", arg.name or "", depth=depth + 1)
    return StepInput(
        name=name, value=value, source=f"output {arg.name} of {producer}", made_by=made_by
    )


def _same_item(session: Session, run_id: str, task: str, label: str) -> str:
    """The label of ``task`` that fed ``label``: the same loop item if it ran per item."""
    _, bracket, rest = label.partition("[")
    if bracket and last_attempt(session, run_id, f"{task}[{rest}") is not None:
        return f"{task}[{rest}"
    return task


def _consumers(
    session: Session, run_id: str, label: str, output: str | None, *, depth: int
) -> list[Product]:
    """The steps of the run that took ``label``'s ``output`` (any output when None) as an
    input, each with what it made in turn."""
    if depth >= MAX_DEPTH:
        return []
    _, graph = _graph(session, run_id)
    producer = label.partition("[")[0]
    found = []
    for task in graph.tasks:
        for name, arg in task.arguments.items():
            if arg.kind != "output" or arg.task != producer:
                continue
            if output is not None and arg.name != output:
                continue
            consumer = _same_item(session, run_id, task.id, label)
            if last_attempt(session, run_id, consumer) is None:
                continue  # a branch not taken, or a step that never ran
            found.append(_step_product(session, run_id, consumer, f"input {name}", depth))
    return found


def _step_product(session: Session, run_id: str, label: str, relation: str, depth: int) -> Product:
    query = select(LineageRow).where(LineageRow.run_id == run_id, LineageRow.step == label)
    made = [_subject_product(link) for link in session.scalars(query.order_by(LineageRow.id))]
    made += _consumers(session, run_id, label, None, depth=depth + 1)
    return Product(
        kind="step", id=f"{run_id}/{label}", relation=relation, run_id=run_id, step=label, made=made
    )


def _subject_product(link: LineageRow) -> Product:
    relation = f"{link.relation} {link.target}".strip()
    return Product(
        kind=link.subject_kind,
        id=link.subject_id,
        relation=relation,
        run_id=link.run_id,
        step=link.step,
    )


def _made(session: Session, kind: str, subject: str, made_by: list[StepOrigin]) -> list[Product]:
    made: list[Product] = []
    for origin in made_by:
        if origin.relation == "created":  # the steps after the one that made it
            made += _consumers(session, origin.run_id, origin.step, None, depth=0)
    if kind == "model_version":
        made += _version_products(session, subject)
    elif kind == "endpoint":
        made += _endpoint_products(session, subject)
    elif kind == "batch_job":
        job = session.get(BatchJobRow, subject)
        if job is not None:
            made.append(
                Product(kind="output", id=str(job.spec.get("output", "")), relation="wrote")
            )
    return made


def _version_products(session: Session, subject: str) -> list[Product]:
    row = resolve_version_row(session, parse_ref(subject))
    name = row.model.name
    products = [
        Product(kind="alias", id=f"{name}@{a.alias}", relation="alias")
        for a in row.model.aliases
        if a.version_id == row.id
    ]
    deployments = session.scalars(select(DeploymentRow).where(DeploymentRow.version_id == row.id))
    for d in deployments:
        share = "shadow" if d.shadow else f"{d.traffic}%"
        products.append(
            Product(kind="endpoint", id=d.endpoint.name, relation=f"serves it ({share})")
        )
    jobs = session.scalars(select(BatchJobRow).where(BatchJobRow.model_version == subject))
    products += [
        Product(kind="batch_job", id=j.id, relation=f"scored with it ({j.state})") for j in jobs
    ]
    return products


def _endpoint_products(session: Session, subject: str) -> list[Product]:
    row = session.scalars(select(EndpointRow).where(EndpointRow.name == subject)).one()
    return [
        Product(
            kind="model_version",
            id=f"{d.version.model.name}:{d.version.version}",
            relation="serves" + (" (shadow)" if d.shadow else f" {d.traffic}%"),
        )
        for d in row.deployments
    ]
