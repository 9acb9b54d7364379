"""Payload logs: the requests and answers an endpoint logged, their stats and shadow agreement.

The interface (`LogsAPI`) and its two forms side by side: in-process on
CLOCHE_HOME's store, and over a server's REST API.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Protocol

import pyarrow as pa

from cloche.client._http import API, HttpTransport
from cloche.client._local import LocalTransport
from cloche.client.endpoints import endpoint_path
from cloche.logs import service as logs
from cloche.logs.service import LogStats, ShadowAgreement
from cloche.logs.table import SCHEMA


class LogsAPI(Protocol):
    def read(
        self,
        endpoint: str,
        *,
        since: str | datetime | None = "1h",
        until: str | datetime | None = None,
        limit: int = 1000,
    ) -> pa.Table:
        """An endpoint's logged requests as an Arrow table (inputs/outputs as JSON text)."""
        ...

    def stats(self) -> LogStats:
        """Rows logged, and rows that could not be logged (a full disk), across workers."""
        ...

    def shadow_agreement(
        self, endpoint: str, *, since: str | datetime | None = "24h"
    ) -> list[ShadowAgreement]:
        """Per shadow deployment: requests compared with the live answer, and how many agreed."""
        ...


class LocalLogs:
    def __init__(self, transport: LocalTransport) -> None:
        self._t = transport

    def read(
        self,
        endpoint: str,
        *,
        since: str | datetime | None = "1h",
        until: str | datetime | None = None,
        limit: int = 1000,
    ) -> pa.Table:
        return logs.read_endpoint_log(
            self._t.store, endpoint=endpoint, since=since, until=until, limit=limit
        )

    def stats(self) -> LogStats:
        return logs.endpoint_log_stats(self._t.store)

    def shadow_agreement(
        self, endpoint: str, *, since: str | datetime | None = "24h"
    ) -> list[ShadowAgreement]:
        return logs.shadow_agreement(self._t.store, endpoint=endpoint, since=since)


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    """The same table the in-process transport returns: inputs and outputs as JSON text."""
    for row in rows:
        row["time"] = datetime.fromisoformat(row["time"])
        if row.get("received_at"):  # absent from servers older than the column
            row["received_at"] = datetime.fromisoformat(row["received_at"])
        for key in ("inputs", "outputs"):
            if row[key] is not None and not isinstance(row[key], str):
                row[key] = json.dumps(row[key])
    return pa.Table.from_pylist(rows, schema=SCHEMA)


class HttpLogs:
    def __init__(self, transport: HttpTransport) -> None:
        self._t = transport

    def read(
        self,
        endpoint: str,
        *,
        since: str | datetime | None = "1h",
        until: str | datetime | None = None,
        limit: int = 1000,
    ) -> pa.Table:
        params: dict[str, Any] = {"limit": limit}
        for key, value in (("since", since), ("until", until)):
            if value is not None:
                params[key] = value.isoformat() if isinstance(value, datetime) else value
        page = self._t.request("GET", endpoint_path(endpoint, "logs"), params=params).json()
        return _table(page["rows"])

    def shadow_agreement(
        self, endpoint: str, *, since: str | datetime | None = "24h"
    ) -> list[ShadowAgreement]:
        params = {"since": since.isoformat() if isinstance(since, datetime) else since or "24h"}
        found = self._t.request(
            "GET", endpoint_path(endpoint, "shadow-agreement"), params=params
        ).json()
        return [ShadowAgreement.model_validate(a) for a in found]

    def stats(self) -> LogStats:
        return LogStats.model_validate(self._t.request("GET", f"{API}/logs/stats").json())
