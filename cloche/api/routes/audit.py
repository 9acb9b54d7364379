"""The audit log, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from cloche import audit
from cloche.alerts.masking import for_principal
from cloche.api.deps import Reader, StoreDep
from cloche.api.routes import make_router
from cloche.audit import AuditEntry

router = make_router("/audit", "audit")


@router.get("")
def list_audit(
    principal: Reader,
    store: StoreDep,
    resource_type: Annotated[str | None, Query(description="e.g. model, token")] = None,
    resource: Annotated[str | None, Query(description="e.g. churn:2, churn@prod")] = None,
    actor: Annotated[str | None, Query(description="e.g. token:3f2a9c1b0d4e, local")] = None,
    action: Annotated[str | None, Query(description="e.g. alias.move, token.create")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[AuditEntry]:
    """List audit entries: who changed what, when, before and after (webhook URLs show only
    their host unless the caller is an admin)."""
    return for_principal(
        principal,
        audit.list_audit(
            store,
            resource_type=resource_type,
            resource=resource,
            actor=actor,
            action=action,
            limit=limit,
        ),
    )
