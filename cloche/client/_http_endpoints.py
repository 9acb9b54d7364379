"""HTTP transport for endpoints and deployments (the REST twin of _local.LocalEndpoints)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

import pyarrow as pa

from cloche.client._http import API, HttpTransport
from cloche.endpoints.entities import Endpoint
from cloche.logs.service import LogStats, ShadowAgreement
from cloche.logs.table import SCHEMA
from cloche.registry.refs import check_name


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
        page = self._t.request("GET", _path(endpoint, "logs"), params=params).json()
        return _table(page["rows"])

    def shadow_agreement(
        self, endpoint: str, *, since: str | datetime | None = "24h"
    ) -> list[ShadowAgreement]:
        params = {"since": since.isoformat() if isinstance(since, datetime) else since or "24h"}
        found = self._t.request("GET", _path(endpoint, "shadow-agreement"), params=params).json()
        return [ShadowAgreement.model_validate(a) for a in found]

    def stats(self) -> LogStats:
        return LogStats.model_validate(self._t.request("GET", f"{API}/logs/stats").json())


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


def _path(name: str, *rest: str) -> str:
    parts = [quote(check_name(name), safe=""), *(quote(r, safe="") for r in rest)]
    return f"{API}/endpoints/" + "/".join(parts)


class HttpEndpoints:
    def __init__(self, transport: HttpTransport) -> None:
        self._t = transport

    def create(self, name: str, *, description: str = "", log_sample_rate: float = 1.0) -> Endpoint:
        check_name(name)
        body = {"name": name, "description": description, "log_sample_rate": log_sample_rate}
        return Endpoint.model_validate(
            self._t.request("POST", f"{API}/endpoints", json=body).json()
        )

    def update(
        self, name: str, *, description: str | None = None, log_sample_rate: float | None = None
    ) -> Endpoint:
        body = {"description": description, "log_sample_rate": log_sample_rate}
        return Endpoint.model_validate(self._t.request("PATCH", _path(name), json=body).json())

    def list(self) -> list[Endpoint]:
        return [
            Endpoint.model_validate(e) for e in self._t.request("GET", f"{API}/endpoints").json()
        ]

    def get(self, name: str) -> Endpoint:
        return Endpoint.model_validate(self._t.request("GET", _path(name)).json())

    def delete(self, name: str) -> None:
        self._t.request("DELETE", _path(name))

    def deploy(
        self,
        name: str,
        ref: str,
        *,
        traffic: int | None = None,
        shadow: bool = False,
        max_batch_size: int = 64,
        timeout_ms: int = 10_000,
    ) -> Endpoint:
        body = {
            "model": ref,
            "traffic": traffic,
            "shadow": shadow,
            "max_batch_size": max_batch_size,
            "timeout_ms": timeout_ms,
        }
        response = self._t.request("POST", _path(name, "deployments"), json=body)
        return Endpoint.model_validate(response.json())

    def traffic(self, name: str, split: Mapping[str, int]) -> Endpoint:
        response = self._t.request("PUT", _path(name, "traffic"), json={"traffic": dict(split)})
        return Endpoint.model_validate(response.json())

    def undeploy(self, name: str, ref: str) -> Endpoint:
        return Endpoint.model_validate(
            self._t.request("DELETE", _path(name, "deployments", ref)).json()
        )
