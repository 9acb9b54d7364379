"""Endpoints: create them, deploy versions and split traffic between them.

The interface (`EndpointsAPI`) and its two forms side by side: in-process on
CLOCHE_HOME's store, and over a server's REST API.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol
from urllib.parse import quote

from cloche.client._http import API, HttpTransport
from cloche.client._local import LocalTransport
from cloche.client._paging import collect, http_page
from cloche.endpoints import service as endpoints
from cloche.endpoints.entities import Endpoint
from cloche.monitoring import traffic
from cloche.monitoring.traffic import EndpointTraffic
from cloche.registry.refs import check_name
from cloche.store.paging import Order

DEFAULT_WAIT_S = 120.0  # `deploy --wait`: how long the serving workers get to warm a model


class EndpointsAPI(Protocol):
    def create(self, name: str, *, description: str = "", log_sample_rate: float = 1.0) -> Endpoint:
        """Create an endpoint with no deployments; ``log_sample_rate`` of requests are logged."""
        ...

    def update(
        self, name: str, *, description: str | None = None, log_sample_rate: float | None = None
    ) -> Endpoint:
        """Change an endpoint's description or payload-log sampling rate."""
        ...

    def list(
        self,
        *,
        q: str | None = None,
        sort: str | None = None,
        order: Order | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Endpoint]:
        """Endpoints with their deployments; ``q`` searches names, ``sort`` is name (default)
        or created; ``limit`` None means all."""
        ...

    def get(self, name: str) -> Endpoint: ...

    def delete(self, name: str) -> None: ...

    def deploy(
        self,
        name: str,
        ref: str,
        *,
        traffic: int | None = None,
        shadow: bool = False,
        max_batch_size: int = 64,
        timeout_ms: int = 10_000,
        wait: bool = False,
        wait_timeout_s: float = DEFAULT_WAIT_S,
    ) -> Endpoint:
        """Deploy a model version; with ``traffic`` N the others scale down to 100-N. With
        ``wait``, return once every serving worker holds it warm (Unavailable naming the
        workers that are not, after ``wait_timeout_s``)."""
        ...

    def traffic(self, name: str, split: Mapping[str, int]) -> Endpoint:
        """Set the split, e.g. ``{"churn:3": 90, "churn:4": 10}``; shares sum to 100."""
        ...

    def undeploy(self, name: str, ref: str) -> Endpoint: ...

    def traffic_series(self, name: str, *, window: str = "1h") -> EndpointTraffic:
        """Requests/s, error rates and p50/p95/p99 latency per deployment over ``window``
        ("1h": a point per 10 s; "1d": per minute)."""
        ...


class LocalEndpoints:
    def __init__(self, transport: LocalTransport) -> None:
        self._t = transport

    def create(self, name: str, *, description: str = "", log_sample_rate: float = 1.0) -> Endpoint:
        return endpoints.create_endpoint(
            self._t.store,
            name=name,
            description=description,
            log_sample_rate=log_sample_rate,
            actor=self._t.actor,
        )

    def update(
        self, name: str, *, description: str | None = None, log_sample_rate: float | None = None
    ) -> Endpoint:
        return endpoints.update_endpoint(
            self._t.store,
            name=name,
            description=description,
            log_sample_rate=log_sample_rate,
            actor=self._t.actor,
        )

    def list(
        self,
        *,
        q: str | None = None,
        sort: str | None = None,
        order: Order | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Endpoint]:
        return collect(
            lambda page: endpoints.page_endpoints(self._t.store, page),
            q=q,
            sort=sort,
            order=order,
            limit=limit,
            offset=offset,
        )

    def get(self, name: str) -> Endpoint:
        return endpoints.get_endpoint(self._t.store, name)

    def delete(self, name: str) -> None:
        endpoints.delete_endpoint(self._t.store, name=name, actor=self._t.actor)

    def deploy(
        self,
        name: str,
        ref: str,
        *,
        traffic: int | None = None,
        shadow: bool = False,
        max_batch_size: int = 64,
        timeout_ms: int = 10_000,
        wait: bool = False,
        wait_timeout_s: float = DEFAULT_WAIT_S,
    ) -> Endpoint:
        return endpoints.deploy(
            self._t.store,
            endpoint=name,
            ref=ref,
            traffic=traffic,
            shadow=shadow,
            max_batch_size=max_batch_size,
            timeout_ms=timeout_ms,
            actor=self._t.actor,
            wait_s=wait_timeout_s if wait else None,
        )

    def traffic(self, name: str, split: Mapping[str, int]) -> Endpoint:
        return endpoints.set_traffic(self._t.store, endpoint=name, split=split, actor=self._t.actor)

    def undeploy(self, name: str, ref: str) -> Endpoint:
        return endpoints.undeploy(self._t.store, endpoint=name, ref=ref, actor=self._t.actor)

    def traffic_series(self, name: str, *, window: str = "1h") -> EndpointTraffic:
        return traffic.endpoint_traffic(self._t.store, name, window)


def endpoint_path(name: str, *rest: str) -> str:
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
        return Endpoint.model_validate(
            self._t.request("PATCH", endpoint_path(name), json=body).json()
        )

    def list(
        self,
        *,
        q: str | None = None,
        sort: str | None = None,
        order: Order | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Endpoint]:
        return collect(
            lambda page: http_page(self._t, f"{API}/endpoints", page, Endpoint),
            q=q,
            sort=sort,
            order=order,
            limit=limit,
            offset=offset,
        )

    def get(self, name: str) -> Endpoint:
        return Endpoint.model_validate(self._t.request("GET", endpoint_path(name)).json())

    def delete(self, name: str) -> None:
        self._t.request("DELETE", endpoint_path(name))

    def deploy(
        self,
        name: str,
        ref: str,
        *,
        traffic: int | None = None,
        shadow: bool = False,
        max_batch_size: int = 64,
        timeout_ms: int = 10_000,
        wait: bool = False,
        wait_timeout_s: float = DEFAULT_WAIT_S,
    ) -> Endpoint:
        body = {
            "model": ref,
            "traffic": traffic,
            "shadow": shadow,
            "max_batch_size": max_batch_size,
            "timeout_ms": timeout_ms,
            "wait_s": wait_timeout_s if wait else None,
        }
        # A waiting deploy is answered once the model is warm: give the call that long too.
        timeout = self._t.timeout + (wait_timeout_s if wait else 0.0)
        response = self._t.request(
            "POST", endpoint_path(name, "deployments"), json=body, timeout=timeout
        )
        return Endpoint.model_validate(response.json())

    def traffic(self, name: str, split: Mapping[str, int]) -> Endpoint:
        response = self._t.request(
            "PUT", endpoint_path(name, "traffic"), json={"traffic": dict(split)}
        )
        return Endpoint.model_validate(response.json())

    def undeploy(self, name: str, ref: str) -> Endpoint:
        return Endpoint.model_validate(
            self._t.request("DELETE", endpoint_path(name, "deployments", ref)).json()
        )

    def traffic_series(self, name: str, *, window: str = "1h") -> EndpointTraffic:
        traffic.check_window(window)  # the same message before any request
        response = self._t.request("GET", endpoint_path(name, "traffic"), params={"window": window})
        return EndpointTraffic.model_validate(response.json())
