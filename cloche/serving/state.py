"""What the data plane serves, read from the metadata store in one query.

Workers compare the serving generation (bumped by every endpoint change) with the one they
hold and, when it moved, read this snapshot and apply it (see router.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from cloche.store.store import Store
from cloche.store.tables import DeploymentRow, EndpointRow, ServingStateRow, VersionRow


@dataclass(frozen=True)
class DeploymentSpec:
    """Everything a worker needs to load and serve one deployment."""

    deployment_id: int
    endpoint: str
    model: str
    version: int
    framework: str
    artifact_key: str
    files: dict[str, Any]
    sha256: str
    signature: dict[str, Any]
    traffic: int
    shadow: bool
    max_batch_size: int
    timeout_ms: int
    log_sample_rate: float = 1.0

    @property
    def ref(self) -> str:
        return f"{self.model}:{self.version}"


@dataclass(frozen=True)
class Snapshot:
    generation: int
    endpoints: dict[str, list[DeploymentSpec]]


def read_generation(store: Store) -> int:
    """The serving generation: every endpoint change bumps it (endpoints/service.py)."""
    with store.transaction() as session:
        return _generation(session)


def _generation(session: Session) -> int:
    value = session.scalar(select(ServingStateRow.generation).where(ServingStateRow.id == 1))
    return int(value or 0)


def read_snapshot(store: Store) -> Snapshot:
    with store.transaction() as session:
        generation = _generation(session)
        rows = session.scalars(
            select(EndpointRow).options(
                selectinload(EndpointRow.deployments)
                .selectinload(DeploymentRow.version)
                .selectinload(VersionRow.model)
            )
        ).all()
        endpoints = {row.name: [_spec(row, d) for d in row.deployments] for row in rows}
        return Snapshot(generation, endpoints)


def _spec(endpoint: EndpointRow, d: DeploymentRow) -> DeploymentSpec:
    v = d.version
    return DeploymentSpec(
        deployment_id=d.id,
        endpoint=endpoint.name,
        model=v.model.name,
        version=v.version,
        framework=v.framework,
        artifact_key=v.artifact_key,
        files=v.files,
        sha256=v.sha256,
        signature=v.signature,
        traffic=d.traffic,
        shadow=d.shadow,
        max_batch_size=d.max_batch_size,
        timeout_ms=d.timeout_ms,
        log_sample_rate=endpoint.log_sample_rate,
    )
