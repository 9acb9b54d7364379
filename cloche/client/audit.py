"""The audit log: who changed what, when.

The interface (`AuditAPI`) and its two forms side by side: in-process on
CLOCHE_HOME's store, and over a server's REST API.
"""

from __future__ import annotations

from typing import Protocol

from cloche import audit
from cloche.audit import AuditEntry
from cloche.client._http import API, HttpTransport
from cloche.client._local import LocalTransport
from cloche.client._paging import collect, http_page
from cloche.store.paging import Order


class AuditAPI(Protocol):
    def list(
        self,
        *,
        resource_type: str | None = None,
        resource: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        q: str | None = None,
        sort: str | None = None,
        order: Order | None = None,
        limit: int | None = 100,
        offset: int = 0,
    ) -> list[AuditEntry]: ...


class LocalAudit:
    def __init__(self, transport: LocalTransport) -> None:
        self._t = transport

    def list(
        self,
        *,
        resource_type: str | None = None,
        resource: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        q: str | None = None,
        sort: str | None = None,
        order: Order | None = None,
        limit: int | None = 100,
        offset: int = 0,
    ) -> list[AuditEntry]:
        filters = {
            "resource_type": resource_type,
            "resource": resource,
            "actor": actor,
            "action": action,
        }
        return collect(
            lambda page: audit.page_audit(self._t.store, page, **filters),
            q=q,
            sort=sort,
            order=order,
            limit=limit,
            offset=offset,
        )


class HttpAudit:
    def __init__(self, transport: HttpTransport) -> None:
        self._t = transport

    def list(
        self,
        *,
        resource_type: str | None = None,
        resource: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        q: str | None = None,
        sort: str | None = None,
        order: Order | None = None,
        limit: int | None = 100,
        offset: int = 0,
    ) -> list[AuditEntry]:
        filters = [
            ("resource_type", resource_type),
            ("resource", resource),
            ("actor", actor),
            ("action", action),
        ]
        return collect(
            lambda page: http_page(self._t, f"{API}/audit", page, AuditEntry, filters),
            q=q,
            sort=sort,
            order=order,
            limit=limit,
            offset=offset,
        )
