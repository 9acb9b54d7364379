"""HTTP transport for endpoints and deployments (the REST twin of _local.LocalEndpoints)."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from cloche.client._http import API, HttpTransport
from cloche.endpoints.entities import Endpoint
from cloche.registry.refs import check_name


def _path(name: str, *rest: str) -> str:
    parts = [quote(check_name(name), safe=""), *(quote(r, safe="") for r in rest)]
    return f"{API}/endpoints/" + "/".join(parts)


class HttpEndpoints:
    def __init__(self, transport: HttpTransport) -> None:
        self._t = transport

    def create(self, name: str, *, description: str = "") -> Endpoint:
        check_name(name)
        body = {"name": name, "description": description}
        return Endpoint.model_validate(
            self._t.request("POST", f"{API}/endpoints", json=body).json()
        )

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
