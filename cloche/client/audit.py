"""The audit log: who changed what, when.

The interface (`AuditAPI`) and its two forms side by side: in-process on
CLOCHE_HOME's store, and over a server's REST API.
"""

from __future__ import annotations

from typing import Any, Protocol

from cloche import audit
from cloche.audit import AuditEntry
from cloche.client._http import API, HttpTransport
from cloche.client._local import LocalTransport


class AuditAPI(Protocol):
    def list(
        self, *, resource_type: str | None = None, resource: str | None = None, limit: int = 100
    ) -> list[AuditEntry]: ...


class LocalAudit:
    def __init__(self, transport: LocalTransport) -> None:
        self._t = transport

    def list(
        self, *, resource_type: str | None = None, resource: str | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        return audit.list_audit(
            self._t.store, resource_type=resource_type, resource=resource, limit=limit
        )


class HttpAudit:
    def __init__(self, transport: HttpTransport) -> None:
        self._t = transport

    def list(
        self, *, resource_type: str | None = None, resource: str | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        params: dict[str, Any] = {"limit": limit}
        if resource_type:
            params["resource_type"] = resource_type
        if resource:
            params["resource"] = resource
        response = self._t.request("GET", f"{API}/audit", params=params)
        return [AuditEntry.model_validate(e) for e in response.json()]
