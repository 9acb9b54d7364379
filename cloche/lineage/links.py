"""The links from what a pipeline step made to its run and step. The services that create
versions, deployments and batch jobs call ``record`` inside their own transaction, so a link is
stored exactly when the thing it describes is."""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.orm import Session

from cloche.lineage.context import current
from cloche.store.tables import LineageRow, PipelineRunRow


def record(session: Session, kind: str, subject_id: str, relation: str, target: str = "") -> None:
    """Link ``kind`` ``subject_id`` to the current step, if any. A step of a run kept in another
    store (a pipeline run elsewhere calling this server) leaves no link: its run is not here."""
    step = current()
    if step is None or session.get(PipelineRunRow, step.run_id) is None:
        return
    session.add(
        LineageRow(
            subject_kind=kind,
            subject_id=subject_id,
            run_id=step.run_id,
            step=step.step,
            relation=relation,
            target=target,
        )
    )


def forget(session: Session, kind: str, subject_ids: list[str]) -> None:
    """Drop the links of deleted subjects, so a later one of the same name (a version number
    given again, an endpoint made again) does not inherit them; the audit log keeps the past."""
    if subject_ids:
        session.execute(
            delete(LineageRow).where(
                LineageRow.subject_kind == kind, LineageRow.subject_id.in_(subject_ids)
            )
        )
