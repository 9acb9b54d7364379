"""The cloche SDK: one interface, in-process or over HTTP.

client = cloche.Client()                                   # this machine's CLOCHE_HOME
client = cloche.Client("http://host:8080", token="cl_…")   # a cloche server

Over HTTP with no token (argument or CLOCHE_TOKEN), a loopback URL uses the local admin token
that `cloche up` wrote to ``$CLOCHE_HOME/local-token``.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloche.config import Settings

if TYPE_CHECKING:
    from cloche.client.alerts import AlertsAPI
    from cloche.client.audit import AuditAPI
    from cloche.client.batch import BatchAPI
    from cloche.client.endpoints import EndpointsAPI
    from cloche.client.lineage import LineageAPI
    from cloche.client.logs import LogsAPI
    from cloche.client.models import ModelsAPI
    from cloche.client.monitors import MonitorsAPI
    from cloche.client.pipelines import PipelinesAPI
    from cloche.client.tokens import TokensAPI

# Each resource is one module of cloche.client holding its interface and both of its forms
# (in-process and HTTP) side by side; a new resource is a new module and a line here.
RESOURCES = (
    "models", "endpoints", "logs", "batch", "monitors", "alerts", "tokens", "audit", "pipelines",
    "lineage",
)  # fmt: skip


class Client:
    """Entry point of the SDK: ``client.models``, ``.endpoints``, ``.batch``, ``.monitors``,
    ``.alerts``, ``.logs``, ``.tokens``, ``.audit``, ``.pipelines``, ``.lineage``."""

    models: ModelsAPI
    endpoints: EndpointsAPI
    batch: BatchAPI
    monitors: MonitorsAPI
    alerts: AlertsAPI
    logs: LogsAPI
    tokens: TokensAPI
    audit: AuditAPI
    pipelines: PipelinesAPI
    lineage: LineageAPI

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
            from cloche.client import _http

            token = token or os.environ.get("CLOCHE_TOKEN") or None
            if token is None:
                token = _http.local_token_for(url, lambda: (settings or _settings_for(home)).home)
            self._transport: Any = _http.HttpTransport(url, token=token, timeout=timeout)
        else:
            from cloche.client import _local

            self._transport = _local.LocalTransport(settings or _settings_for(home))
        for name in RESOURCES:
            setattr(self, name, resource_forms(name)[1 if url else 0](self._transport))
        self.url = url
        if "IPython" in sys.modules:  # in a notebook, results render as tables
            from cloche.notebook.display import enable

            enable()

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _settings_for(home: str | Path | None) -> Settings:
    return Settings(home=Path(home)) if home is not None else Settings()


def resource_forms(name: str) -> tuple[type, type]:
    """The in-process and HTTP classes of the resource ``name`` (its module: cloche.client.NAME)."""
    module = importlib.import_module(f"cloche.client.{name}")
    forms = [getattr(module, f"{kind}{name.capitalize()}") for kind in ("Local", "Http")]
    return forms[0], forms[1]
