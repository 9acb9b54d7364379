"""Registry and endpoint steps: upload a version, create an endpoint, deploy, split traffic,
move an alias."""

from __future__ import annotations

import cloche
from cloche.errors import EndpointNotFound
from cloche.pipelines.component import component


@component
def upload_model(
    path: str,
    name: str,
    aliases: list[str] | None = None,
    baseline: str = "",
    labels: dict | None = None,  # type: ignore[type-arg]
    metrics: dict | None = None,  # type: ignore[type-arg]
) -> str:
    """Register a model file or folder as a new version; returns its reference (``churn:3``)."""
    with cloche.Client() as client:
        version = client.models.upload(
            path,
            name=name,
            aliases=aliases or [],
            baseline=baseline or None,
            labels=labels or {},
            metrics=metrics or {},
        )
    print(f"registered {version.ref}")
    return version.ref


@component
def create_endpoint(name: str, description: str = "", log_sample_rate: float = 1.0) -> str:
    """Make sure the endpoint exists (created if it does not); returns its name."""
    with cloche.Client() as client:
        try:
            client.endpoints.get(name)
            print(f"endpoint {name} exists")
        except EndpointNotFound:
            client.endpoints.create(name, description=description, log_sample_rate=log_sample_rate)
            print(f"created endpoint {name}")
    return name


@component
def deploy_model(endpoint: str, model: str, traffic: int = 100, wait: bool = True) -> dict:  # type: ignore[type-arg]
    """Deploy a version (``churn:3``, ``churn@staging``) with ``traffic`` percent of requests;
    the others keep the rest in proportion. Run again (a resumed run), it sets that share on the
    deployment already there. With ``wait`` (the default) the step ends once every running
    server's workers hold the version warm, so a next step's traffic reaches it (traffic moves
    only to warm models). Returns the endpoint's traffic split."""
    with cloche.Client() as client:
        version = client.models.show(model).ref
        current = client.endpoints.get(endpoint).traffic()
        if version in current:  # run again after a restart: the deployment is there already
            if current[version] != traffic:
                found = client.endpoints.traffic(endpoint, _rescaled(current, version, traffic))
            else:
                found = client.endpoints.get(endpoint)
        else:
            found = client.endpoints.deploy(endpoint, version, traffic=traffic, wait=wait)
    print(f"{endpoint}: {found.traffic()}")
    return found.traffic()


def _rescaled(current: dict[str, int], version: str, traffic: int) -> dict[str, int]:
    """``version`` at ``traffic``, the others sharing the rest in proportion (as deploy does)."""
    others = {ref: share for ref, share in current.items() if ref != version}
    rest, total = 100 - traffic, sum(others.values())
    split = {ref: (share * rest // total if total else 0) for ref, share in others.items()}
    if others:
        first = next(iter(split))
        split[first] += rest - sum(split.values())
    return {**split, version: traffic if others else 100}


@component
def set_traffic(endpoint: str, split: dict) -> dict:  # type: ignore[type-arg]
    """Set the endpoint's split, ``{"churn:2": 90, "churn:3": 10}`` (sums to 100)."""
    with cloche.Client() as client:
        found = client.endpoints.traffic(endpoint, {str(k): int(v) for k, v in split.items()})
    print(f"{endpoint}: {found.traffic()}")
    return found.traffic()


@component
def promote_alias(model: str, alias: str) -> str:
    """Point ``alias`` (``prod``) at the version ``model`` names; returns that version."""
    with cloche.Client() as client:
        version = client.models.alias(model, alias)
    print(f"{version.name}@{alias} -> {version.ref}")
    return version.ref
