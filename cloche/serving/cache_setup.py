"""The model cache of a `cloche up` worker: its share of the budget, sizes from the registry,
hash checks timed apart from fetching, stage timings into the worker's metrics."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import select

from cloche.config import Settings
from cloche.serving.metrics import WorkerMetrics, instance_id
from cloche.serving.model_cache import ModelCache
from cloche.serving.residency import state_file
from cloche.serving.spec import DeploymentSpec
from cloche.store.artifacts import ArtifactStore
from cloche.store.store import Store
from cloche.store.tables import ModelRow, VersionRow


def worker_budget(settings: Settings) -> int | None:
    """This worker's equal share of ``serving.model_memory`` (None: no limit)."""
    total = settings.serving.model_memory
    if total is None:
        return None
    workers = settings.serving.workers or os.cpu_count() or 1
    return max(1, total // workers)


def server_cache(
    settings: Settings, store: Store, server_id: str, metrics: WorkerMetrics | None = None
) -> ModelCache:
    artifacts = store.artifacts

    def fetch(spec: DeploymentSpec) -> Path:
        return artifacts.fetch_dir(spec.artifact_key, spec.files)

    def check(spec: DeploymentSpec, folder: Path) -> None:
        ArtifactStore.verify(folder, spec.files, key=spec.artifact_key)

    def size_of(spec: DeploymentSpec) -> int | None:
        with store.transaction() as session:
            value = session.scalar(
                select(VersionRow.resident_bytes)
                .join(ModelRow, VersionRow.model_id == ModelRow.id)
                .where(ModelRow.name == spec.model, VersionRow.version == spec.version)
            )
        return int(value) if value else None

    return ModelCache(
        fetch,
        check=check,
        budget_bytes=worker_budget(settings),
        size_of=size_of,
        state_file=state_file(store.home, server_id, instance_id()),
        on_stage=metrics.model_load_stage if metrics is not None else None,
    )
