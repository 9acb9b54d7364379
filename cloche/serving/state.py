"""What the data plane serves, read from the metadata store in one query.

Workers compare the serving generation (bumped by every endpoint change) with the one they
hold and, when it moved, read this snapshot and apply it (see router.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from cloche.serving.spec import DeploymentSpec, Snapshot
from cloche.store.store import Store
from cloche.store.tables import DeploymentRow, EndpointRow, ServingStateRow, VersionRow


class StoreSource:
    """The serving state of a `cloche up` worker: what the metadata store says."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def generation(self) -> int:
        return read_generation(self.store)

    def snapshot(self) -> Snapshot:
        return read_snapshot(self.store)


def artifact_locator(store: Store) -> Callable[[DeploymentSpec], Path]:
    """Where a deployment's model files are on this machine (fetched and hash-checked)."""
    return lambda spec: store.artifacts.local_dir(spec.artifact_key, spec.files)


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
