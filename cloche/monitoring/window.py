"""What a monitor looks at: an endpoint's logged traffic in a time window, and its baseline.

The payload log holds each request's inputs as the model received them (rows by position, or
objects by name); here they become one column per feature, so profiles can be built. Shadow
answers and `:explain` calls are left out: they are copies of live requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from cloche.endpoints import service as endpoints
from cloche.logs.service import log_root, read_log
from cloche.monitoring.profiles import kind_of_dtype
from cloche.registry import service as registry
from cloche.registry.datasets import read_table
from cloche.registry.entities import ModelVersion
from cloche.registry.refs import parse_ref
from cloche.registry.service import resolve_version_row
from cloche.store.store import Store


@dataclass(frozen=True)
class Traffic:
    """One window of an endpoint's live traffic."""

    features: pa.Table  # one column per feature, one row per predicted row
    requests: int
    latencies_ms: np.ndarray
    statuses: np.ndarray
    seconds: float

    @property
    def rows(self) -> int:
        return self.features.num_rows


def primary_version(store: Store, endpoint: str) -> ModelVersion | None:
    """The version serving most of the endpoint's live traffic (its baseline is the reference)."""
    live = [d for d in endpoints.get_endpoint(store, endpoint).deployments if not d.shadow]
    if not live:
        return None
    top = max(live, key=lambda d: (d.traffic, d.version))
    return registry.get_version(store, top.ref)


def feature_kinds(version: ModelVersion) -> dict[str, str]:
    """Feature name -> "numeric" or "categorical", from the version's signature."""
    return {f.name: kind_of_dtype(f.dtype) for f in version.parsed_signature().inputs}


def baseline_table(store: Store, version: ModelVersion) -> pa.Table | None:
    """The version's baseline dataset, read from the artifact store (hash verified)."""
    with store.transaction() as session:  # the entity hides the internal artifact key
        meta = resolve_version_row(session, parse_ref(version.ref)).baseline
    if not meta or "key" not in meta:
        return None
    files = {meta["file"]: {"sha256": meta["sha256"], "size": meta["size"]}}
    folder = store.artifacts.local_dir(meta["key"], files)
    return read_table(folder / meta["file"])


def read_traffic(
    store: Store, endpoint: str, start: datetime, end: datetime, names: list[str]
) -> Traffic:
    table = read_log(log_root(store.home), endpoint, since=start, until=end)
    live = pc.invert(pc.fill_null(table["shadow"], False))
    if "kind" in table.column_names:
        live = pc.and_(live, pc.not_equal(pc.fill_null(table["kind"], "predict"), "explain"))
    table = table.filter(live)
    statuses = table["status"].to_numpy(zero_copy_only=False)
    answered = table.filter(pc.equal(table["status"], 200))
    return Traffic(
        features=_feature_columns(answered["inputs"].to_pylist(), names),
        requests=table.num_rows,
        latencies_ms=table["latency_ms"].to_numpy(zero_copy_only=False),
        statuses=statuses,
        seconds=(end - start).total_seconds(),
    )


def _feature_columns(inputs: list[str | None], names: list[str]) -> pa.Table:
    columns: list[list[Any]] = [[] for _ in names]
    width = len(names)
    for text in inputs:
        if not text:
            continue
        rows = orjson.loads(text)
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, dict):
                for i, name in enumerate(names):
                    columns[i].append(row.get(name))
            elif isinstance(row, list) and len(row) == width:
                for i in range(width):
                    columns[i].append(row[i])
    return pa.table({name: _array(values) for name, values in zip(names, columns, strict=True)})


def _array(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types: profiles count the mismatches
        return pa.array([None if v is None else str(v) for v in values], pa.string())
