"""The audit log, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request, Response

from cloche import audit
from cloche.alerts.masking import for_principal
from cloche.api.deps import Reader, StoreDep
from cloche.api.paging import PageParams, items
from cloche.api.routes import make_router
from cloche.audit import AuditEntry

router = make_router("/audit", "audit")


@router.get("")
def list_audit(
    principal: Reader,
    store: StoreDep,
    page: PageParams,
    request: Request,
    response: Response,
    resource_type: Annotated[str | None, Query(description="e.g. model, token")] = None,
    resource: Annotated[str | None, Query(description="e.g. churn:2, churn@prod")] = None,
    actor: Annotated[str | None, Query(description="who made the change")] = None,
    action: Annotated[str | None, Query(description="e.g. alias.move")] = None,
) -> list[AuditEntry]:
    """List audit entries: who changed what, when, before and after (webhook URLs show only
    their host unless the caller is an admin). Newest first; q searches the resource."""
    entries = audit.page_audit(
        store, page, actor=actor, action=action, resource_type=resource_type, resource=resource
    )
    return for_principal(principal, items(entries, request, response))
