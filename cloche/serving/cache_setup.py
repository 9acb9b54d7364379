"""The model cache of a `cloche up` worker: its share of the budget, sizes from the registry,
hash checks timed apart from fetching, stage timings into the worker's metrics."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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

    def sample(spec: DeploymentSpec) -> Any:
        with store.transaction() as session:
            baseline = session.scalar(
                select(VersionRow.baseline)
                .join(ModelRow, VersionRow.model_id == ModelRow.id)
                .where(ModelRow.name == spec.model, VersionRow.version == spec.version)
            )
        return stored_sample(artifacts, baseline, spec.signature)

    return ModelCache(
        fetch,
        check=check,
        budget_bytes=worker_budget(settings),
        size_of=size_of,
        state_file=state_file(store.home, server_id, instance_id()),
        on_stage=metrics.model_load_stage if metrics is not None else None,
        sample=sample,
    )


WARM_UP_ROWS = 8


def stored_sample(
    artifacts: ArtifactStore, baseline: dict[str, Any] | None, signature: dict[str, Any]
) -> Any:
    """The first rows of a version's stored baseline, as the model's input columns, for its
    warm-up prediction; None when it has none or it lacks an input column (then the cache
    makes a row from the signature)."""
    if not baseline or "key" not in baseline:
        return None
    name = str(baseline["file"])
    files = {name: {"sha256": baseline["sha256"], "size": baseline["size"]}}
    folder = artifacts.fetch_dir(str(baseline["key"]), files)
    frame = _head(folder / name, str(baseline.get("format", ""))).to_pandas()
    names = [str(f["name"]) for f in signature.get("inputs") or []]
    if not names or signature.get("input_kind", "tabular") != "tabular":
        return None
    if not set(names) <= set(frame.columns):
        return None
    return frame[names]


def _head(path: Path, fmt: str) -> Any:
    """The first rows of a stored dataset (validated at upload: parquet, csv or jsonl). Read
    here rather than through the registry's reader, which is a layer above the serving engine."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).read_row_group(0).slice(0, WARM_UP_ROWS)
    if fmt == "csv":
        import pyarrow.csv as pcsv

        return pcsv.read_csv(path).slice(0, WARM_UP_ROWS)
    import pyarrow.json as pjson

    return pjson.read_json(path).slice(0, WARM_UP_ROWS)
