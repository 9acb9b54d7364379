"""Baseline datasets attached to a model version (the reference for skew and drift later)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from cloche.registry.datasets import dataset_format, read_table
from cloche.store.store import Store


def store_baseline(store: Store, *, name: str, path: Path) -> dict[str, Any]:
    """Validate a dataset file, copy it into the artifact store and describe it."""
    table = read_table(path)
    key = f"baselines/{name}/{uuid.uuid4().hex}"
    files = store.artifacts.put(key, path)
    return {
        "key": key,
        "file": path.name,
        "format": dataset_format(path),
        "rows": table.num_rows,
        "columns": table.column_names,
        "sha256": files[path.name]["sha256"],
        "size": files[path.name]["size"],
    }


def public_meta(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    """What clients see of a baseline: everything but the internal artifact key."""
    if not meta:
        return None
    return {k: v for k, v in meta.items() if k != "key"}
