"""The lineage of a model version, endpoint, batch job or step artifact, both ways: the steps
that made it (with their inputs and, recursively, the steps that made those), and what it went
on to make (the steps that took it as an input, the endpoints serving it, the jobs scoring with
it, and what each of those made)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloche.lineage.entities import Lineage, Product, StepOrigin
from cloche.lineage.subjects import resolve
from cloche.lineage.walk import Walk
from cloche.registry.refs import parse_ref
from cloche.registry.service import resolve_version_row
from cloche.store.store import Store
from cloche.store.tables import (
    BatchJobRow,
    DeploymentRow,
    EndpointRow,
    LineageRow,
)


def get_lineage(store: Store, ref: str) -> Lineage:
    """Where ``ref`` came from and what it made. A NotFound when ``ref`` names nothing."""
    with store.transaction() as session:
        kind, subject = resolve(session, ref)
        walk = Walk(session)
        if kind == "artifact":
            run_id, step, output = subject.split("/")
            made_by = [walk.origin(run_id, step, "output", output)]
            made = walk.consumers(run_id, step, output)
        else:
            made_by = [
                walk.origin(link.run_id, link.step, link.relation, link.target)
                for link in _links(session, kind, subject)
            ]
            made = _made(walk, kind, subject, made_by)
        note = "" if made_by else f"{subject} was not made or changed by a pipeline run"
        return Lineage(ref=ref, kind=kind, id=subject, made_by=made_by, made=made, note=note)


def _links(session: Session, kind: str, subject: str) -> list[LineageRow]:
    query = select(LineageRow).where(
        LineageRow.subject_kind == kind, LineageRow.subject_id == subject
    )
    return list(session.scalars(query.order_by(LineageRow.id)))


def _made(walk: Walk, kind: str, subject: str, made_by: list[StepOrigin]) -> list[Product]:
    session = walk.session
    made: list[Product] = []
    for origin in made_by:
        if origin.relation == "created":  # the steps after the one that made it
            made += walk.consumers(origin.run_id, origin.step)
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
