"""The cloche SDK: one interface, in-process or over HTTP.

client = cloche.Client()                                   # this machine's CLOCHE_HOME
client = cloche.Client("http://host:8080", token="cl_…")   # a cloche server

Over HTTP with no token (argument or CLOCHE_TOKEN), a loopback URL uses the local admin token
that `cloche up` wrote to ``$CLOCHE_HOME/local-token``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloche.config import Settings

if TYPE_CHECKING:
    from cloche.client._base import (
        AlertsAPI,
        AuditAPI,
        BatchAPI,
        EndpointsAPI,
        LogsAPI,
        ModelsAPI,
        MonitorsAPI,
        TokensAPI,
    )


class Client:
    """Entry point of the SDK: ``client.models``, ``.endpoints``, ``.batch``, ``.monitors``,
    ``.alerts``, ``.logs``, ``.tokens``, ``.audit``."""

    models: ModelsAPI
    endpoints: EndpointsAPI
    batch: BatchAPI
    monitors: MonitorsAPI
    alerts: AlertsAPI
    logs: LogsAPI
    tokens: TokensAPI
    audit: AuditAPI

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        home: str | Path | None = None,
        settings: Settings | None = None,
        timeout: float = 60.0,
    ) -> None:
        url = url or os.environ.get("CLOCHE_URL") or None
        if url:
            from cloche.client import _batch, _http, _http_endpoints, _monitoring

            token = token or os.environ.get("CLOCHE_TOKEN") or None
            if token is None:
                token = _http.local_token_for(url, lambda: (settings or _settings_for(home)).home)
            self._transport: Any = _http.HttpTransport(url, token=token, timeout=timeout)
            self.models = _http.HttpModels(self._transport)
            self.endpoints = _http_endpoints.HttpEndpoints(self._transport)
            self.logs = _http_endpoints.HttpLogs(self._transport)
            self.batch = _batch.HttpBatch(self._transport)
            self.monitors = _monitoring.HttpMonitors(self._transport)
            self.alerts = _monitoring.HttpAlerts(self._transport)
            self.tokens = _http.HttpTokens(self._transport)
            self.audit = _http.HttpAudit(self._transport)
        else:
            from cloche.client import _batch, _local, _monitoring

            self._transport = _local.LocalTransport(settings or _settings_for(home))
            self.models = _local.LocalModels(self._transport)
            self.endpoints = _local.LocalEndpoints(self._transport)
            self.logs = _local.LocalLogs(self._transport)
            self.batch = _batch.LocalBatch(self._transport)
            self.monitors = _monitoring.LocalMonitors(self._transport)
            self.alerts = _monitoring.LocalAlerts(self._transport)
            self.tokens = _local.LocalTokens(self._transport)
            self.audit = _local.LocalAudit(self._transport)
        self.url = url

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _settings_for(home: str | Path | None) -> Settings:
    return Settings(home=Path(home)) if home is not None else Settings()
