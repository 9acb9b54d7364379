"""The audit log: who changed what, when, with the state before and after."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloche.store import paging
from cloche.store.paging import Page, PageRequest
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
    limit: int = 100,
) -> list[AuditEntry]:
    """The newest audit entries first, optionally for one resource type or resource: the first
    pages of ``page_audit``."""
    filters = {"resource_type": resource_type, "resource": resource}
    return paging.collect(lambda page: page_audit(store, page, **filters), limit=limit)


def _entry(r: AuditRow) -> AuditEntry:
    return AuditEntry(
        id=r.id,
        at=as_utc(r.at),
        actor=r.actor,
        action=r.action,
        resource_type=r.resource_type,
        resource=r.resource,
        before=r.before,
        after=r.after,
    )


AUDIT = paging.Listing(
    name="audit entries",
    sorts={"at": AuditRow.at},
    default="at",
    default_order="desc",
    tiebreak=AuditRow.id,
)


def page_audit(
    store: Store,
    request: PageRequest,
    *,
    actor: str | None = None,
    action: str | None = None,
    resource_type: str | None = None,
    resource: str | None = None,
) -> Page[AuditEntry]:
    """Audit entries, newest first by default; ``q`` searches the resource (e.g. ``churn``)."""
    query = select(AuditRow)
    for column, value in (
        (AuditRow.actor, actor),
        (AuditRow.action, action),
        (AuditRow.resource_type, resource_type),
        (AuditRow.resource, resource),
    ):
        if value:
            query = query.where(column == value)
    query = paging.search(query, request, AuditRow.resource)
    with store.transaction() as session:
        return paging.fetch(
            session, query, request, AUDIT, lambda rows: [_entry(r[0]) for r in rows]
        )
