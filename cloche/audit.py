"""The audit log: who changed what, when, with the state before and after."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloche.store.store import Store
from cloche.store.tables import AuditRow


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    resource_type: str
    resource: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    resource_type: str,
    resource: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Add an audit row inside the caller's transaction, so both commit or neither."""
    session.add(
        AuditRow(
            actor=actor,
            action=action,
            resource_type=resource_type,
            resource=resource,
            before=before,
            after=after,
        )
    )


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def list_audit(
    store: Store,
    *,
    resource_type: str | None = None,
    resource: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """The newest audit entries first, optionally for one resource type, resource, actor or
    action."""
    query = select(AuditRow).order_by(AuditRow.id.desc()).limit(max(1, min(limit, 10_000)))
    if resource_type:
        query = query.where(AuditRow.resource_type == resource_type)
    if resource:
        query = query.where(AuditRow.resource == resource)
    if actor:
        query = query.where(AuditRow.actor == actor)
    if action:
        query = query.where(AuditRow.action == action)
    with store.transaction() as session:
        rows = session.scalars(query).all()
        return [
            AuditEntry(
                id=r.id,
                at=as_utc(r.at),
                actor=r.actor,
                action=r.action,
                resource_type=r.resource_type,
                resource=r.resource,
                before=r.before,
                after=r.after,
            )
            for r in rows
        ]
