"""Endpoints and their deployments: create, list, show, deploy, split traffic, undeploy."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request, Response
from pydantic import BaseModel, Field

from cloche.api.deps import Reader, StoreDep, require
from cloche.api.paging import PageParams, items
from cloche.api.routes import make_router
from cloche.auth.roles import Permission, Principal
from cloche.endpoints import service as endpoints
from cloche.endpoints.entities import Endpoint
from cloche.monitoring import traffic
from cloche.monitoring.traffic import EndpointTraffic

router = make_router("/endpoints", "endpoints")
Deployer = Annotated[Principal, Depends(require(Permission.DEPLOY))]


class EndpointRequest(BaseModel):
    name: str = Field(description="endpoint name, used in /v1/models/{name}:predict")
    description: str = ""
    log_sample_rate: float = Field(default=1.0, description="share of requests logged, 0-1")


class EndpointUpdate(BaseModel):
    description: str | None = None
    log_sample_rate: float | None = None


class DeployRequest(BaseModel):
    model: str = Field(description="model reference: name, name:3 or name@prod")
    traffic: int | None = Field(
        default=None, description="percent for this deployment; the others scale down"
    )
    shadow: bool = False
    max_batch_size: int = 64
    timeout_ms: int = 10_000
    wait_s: float | None = Field(
        default=None, description="answer only once every serving worker holds it warm, or 503"
    )


class TrafficRequest(BaseModel):
    traffic: dict[str, int] = Field(
        description='deployment -> percent, e.g. {"churn:3": 90, "churn:4": 10}; sums to 100'
    )


@router.post("", status_code=201)
def create_endpoint(principal: Deployer, store: StoreDep, body: EndpointRequest) -> Endpoint:
    """Create an endpoint with no deployments."""
    return endpoints.create_endpoint(
        store,
        name=body.name,
        description=body.description,
        log_sample_rate=body.log_sample_rate,
        actor=principal.actor,
    )


@router.get("")
def list_endpoints(
    _: Reader, store: StoreDep, page: PageParams, request: Request, response: Response
) -> list[Endpoint]:
    """List endpoints with their deployments and traffic. Sort keys: name (default), created."""
    return items(endpoints.page_endpoints(store, page), request, response)


@router.get("/{name}")
def get_endpoint(_: Reader, store: StoreDep, name: str) -> Endpoint:
    """Show one endpoint."""
    return endpoints.get_endpoint(store, name)


@router.patch("/{name}")
def update_endpoint(
    principal: Deployer, store: StoreDep, name: str, body: EndpointUpdate
) -> Endpoint:
    """Change an endpoint's description or payload-log sampling rate."""
    return endpoints.update_endpoint(
        store,
        name=name,
        description=body.description,
        log_sample_rate=body.log_sample_rate,
        actor=principal.actor,
    )


@router.delete("/{name}", status_code=204)
def delete_endpoint(principal: Deployer, store: StoreDep, name: str) -> Response:
    """Delete an endpoint and all its deployments."""
    endpoints.delete_endpoint(store, name=name, actor=principal.actor)
    return Response(status_code=204)


@router.post("/{name}/deployments", status_code=201)
def deploy(principal: Deployer, store: StoreDep, name: str, body: DeployRequest) -> Endpoint:
    """Deploy a model version to the endpoint."""
    return endpoints.deploy(
        store,
        endpoint=name,
        ref=body.model,
        traffic=body.traffic,
        shadow=body.shadow,
        max_batch_size=body.max_batch_size,
        timeout_ms=body.timeout_ms,
        actor=principal.actor,
        wait_s=body.wait_s,
    )


@router.put("/{name}/traffic")
def set_traffic(principal: Deployer, store: StoreDep, name: str, body: TrafficRequest) -> Endpoint:
    """Set the traffic split; the shares must sum to 100."""
    return endpoints.set_traffic(store, endpoint=name, split=body.traffic, actor=principal.actor)


@router.get("/{name}/traffic")
def get_traffic(
    _: Reader,
    store: StoreDep,
    name: str,
    window: Annotated[str, Query(description="1h (a point per 10 s) or 1d (per minute)")] = "1h",
) -> EndpointTraffic:
    """Requests/s, error rates and latency quantiles per deployment over the last hour or day."""
    return traffic.endpoint_traffic(store, name, window)


@router.delete("/{name}/deployments/{ref}")
def undeploy(principal: Deployer, store: StoreDep, name: str, ref: str) -> Endpoint:
    """Remove a deployment; its share goes to the others in proportion."""
    return endpoints.undeploy(store, endpoint=name, ref=ref, actor=principal.actor)
