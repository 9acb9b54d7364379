"""Fill a store to the console's scale fast: bulk INSERTs into the store's own tables.

Why rows and not the services: uploading 1,000 models through the registry means thousands of
model inspections in a child process (an hour), and the listings read only rows. These rows
are the ones the services write (the same tables and columns, the JSON shapes the entities
validate when read back): models with 1-5 versions, half with a ``prod`` alias; endpoints with
a 90/10 split over two versions; batch jobs and pipeline runs in every state, a few waiting for
approval, each with its pipeline's real graph and step records (bench/_seed_runs.py); monitors
with the default config; alerts open and resolved; audit entries; tokens.
Times are spread over the last 30 days, so sorting by time means something.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import _seed_monitors as seed_monitors
import _seed_runs as seed_runs
from sqlalchemy import Connection, Table, insert

from cloche.monitoring.entities import MonitorConfig
from cloche.store.store import Store
from cloche.store.tables import (
    AlertRow,
    AliasRow,
    AuditRow,
    BatchJobRow,
    DeploymentRow,
    EndpointRow,
    ModelRow,
    MonitorRow,
    MonitorRunRow,
    PipelineRow,
    PipelineRunRow,
    PipelineStepRow,
    TokenRow,
    TrafficSampleRow,
    VersionRow,
)

JOB_STATES = ["succeeded"] * 6 + ["failed", "cancelled", "running", "queued", "partially_succeeded"]
FRAMEWORKS = ["sklearn", "xgboost", "lightgbm", "onnx", "torch"]
ACTIONS = ["alias.move", "endpoint.deploy", "traffic.set", "model.upload", "monitor.pause"]
SIGNATURE = {
    "inputs": [{"name": f"f{i}", "datatype": "FP64", "shape": [-1]} for i in range(8)],
    "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]}],
}
Version = tuple[str, int, int]  # model name, version number, version row id


@dataclass(frozen=True)
class Scale:
    models: int = 1000
    endpoints: int = 200
    jobs: int = 10_000
    runs: int = 10_000
    monitors: int = 200
    alerts: int = 2000
    audit: int = 20_000
    tokens: int = 50
    # Monitors and endpoints with a history (a month of hourly monitor runs, a day of traffic
    # samples): what the monitor and endpoint pages chart. The rest are new, with none.
    histories: int = 0


ISSUE_SCALE = Scale(histories=5)
COUNTS = [
    f for f in Scale.__dataclass_fields__ if f != "histories"
]  # rows of each kind  # issue 18 point 7, plus what the other console pages list


def seed(store: Store, scale: Scale = ISSUE_SCALE, *, rng_seed: int = 0, tag: str = "") -> None:
    """Add ``scale``'s rows to ``store`` in one transaction; a ``tag`` (up to 4 characters)
    in every name and id lets a test seed the same store twice."""
    rng = random.Random(rng_seed)
    now = datetime.now(UTC)
    with store.db.engine.begin() as conn:
        versions = _models(conn, rng, now, scale.models, tag)
        endpoints = _endpoints(conn, rng, now, scale.endpoints, versions, tag)
        _insert(
            conn,
            BatchJobRow,
            [_job(f"{tag}{i:012x}", rng, now, versions) for i in range(scale.jobs)],
        )
        _pipelines(conn, rng, now, scale.runs, tag)
        monitors = [f"mon_{tag}{i:06d}" for i in range(scale.monitors)]
        config = MonitorConfig(alerts=["log"]).model_dump(mode="json")
        _insert(conn, MonitorRow, [
            {"id": mid, "name": f"watch{tag}-{i:05d}", "endpoint": endpoints[i % len(endpoints)][0],
             "config": config, "enabled": i % 10 != 0, "next_run_at": now + timedelta(hours=1),
             "created_at": _when(rng, now), "created_by": "bench"}
            for i, mid in enumerate(monitors)
        ])  # fmt: skip
        _insert(conn, AlertRow, [_alert(rng, now, monitors) for _ in range(scale.alerts)])
        _insert(
            conn, MonitorRunRow, seed_monitors.monitor_runs(monitors[: scale.histories], now, rng)
        )
        _insert(
            conn,
            TrafficSampleRow,
            seed_monitors.traffic_samples(endpoints[: scale.histories], now, rng),
        )
        _insert(conn, AuditRow, [_audit(rng, now) for _ in range(scale.audit)])
        _insert(conn, TokenRow, [
            {"id": f"{tag}{i:012x}", "name": f"ci{tag}-{i}",
             "role": rng.choice(["viewer", "deployer"]), "secret_hash": _hex(rng),
             "created_at": _when(rng, now),
             "created_by": "bench"}
            for i in range(scale.tokens)
        ])  # fmt: skip
    if store.db.engine.dialect.name == "postgresql":
        # Fresh statistics, as autovacuum would have within a minute of these inserts: without
        # them the planner guesses row counts of an empty table.
        with store.db.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")


def _hex(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def _when(rng: random.Random, now: datetime) -> datetime:
    return now - timedelta(seconds=rng.randrange(30 * 86400))


def _table(row: type) -> Table:
    table: Table = row.__table__  # type: ignore[attr-defined]
    return table


def _insert(conn: Connection, row: type, values: list[dict[str, Any]]) -> None:
    if values:
        conn.execute(insert(_table(row)), values)


def _insert_ids(conn: Connection, row: type, values: list[dict[str, Any]]) -> list[int]:
    """The new rows' ids, in the order of ``values`` (one batched statement on both DBs)."""
    if not values:
        return []
    table = _table(row)
    stmt = insert(table).returning(table.c.id, sort_by_parameter_order=True)
    return [i for (i,) in conn.execute(stmt, values)]


def _models(conn: Connection, rng: random.Random, now: datetime, n: int, tag: str) -> list[Version]:
    names = [f"model{tag}-{i:05d}" for i in range(n)]
    created = [_when(rng, now) for _ in names]
    model_ids = _insert_ids(conn, ModelRow, [
        {"name": name, "description": f"{rng.choice(['churn', 'fraud', 'ltv'])} model",
         "created_at": at, "updated_at": at, "created_by": "bench"}
        for name, at in zip(names, created, strict=True)
    ])  # fmt: skip
    specs = [
        (model_id, name, v, at + timedelta(hours=v))
        for model_id, name, at in zip(model_ids, names, created, strict=True)
        for v in range(1, rng.randint(1, 5) + 1)
    ]
    version_ids = _insert_ids(conn, VersionRow, [_version(m, v, at, rng) for m, _, v, at in specs])
    _insert(conn, AliasRow, [
        {"model_id": m, "alias": "prod", "version_id": vid, "updated_at": at}
        for (m, _, v, at), vid in zip(specs, version_ids, strict=True)
        if v == 1 and rng.random() < 0.5
    ])  # fmt: skip
    return [(name, v, vid) for (_, name, v, _), vid in zip(specs, version_ids, strict=True)]


def _version(model_id: int, version: int, at: datetime, rng: random.Random) -> dict[str, Any]:
    digest = _hex(rng)
    return {
        "model_id": model_id, "version": version, "framework": rng.choice(FRAMEWORKS),
        "artifact_key": f"models/{model_id}/{version}",
        "files": {"model.joblib": {"sha256": digest, "size": 4096}}, "sha256": digest,
        "size_bytes": 4096, "signature": SIGNATURE, "metrics": {"auc": round(rng.random(), 3)},
        "labels": {"team": rng.choice(["risk", "growth"])}, "description": "",
        "created_at": at, "created_by": "bench",
    }  # fmt: skip


def _endpoints(
    conn: Connection,
    rng: random.Random,
    now: datetime,
    n: int,
    versions: list[Version],
    tag: str,
) -> list[tuple[str, list[str]]]:
    """The endpoints' names, each with its deployments' refs."""
    names = [f"endpoint{tag}-{i:04d}" for i in range(n)]
    at = [_when(rng, now) for _ in names]
    ids = _insert_ids(conn, EndpointRow, [
        {"name": name, "description": "", "log_sample_rate": 1.0, "created_at": when,
         "updated_at": when, "created_by": "bench"}
        for name, when in zip(names, at, strict=True)
    ])  # fmt: skip
    deployments, refs = [], []
    for endpoint_id, when in zip(ids, at, strict=True):
        stable, canary = rng.sample(versions, 2)
        refs.append([f"{model}:{v}" for model, v, _ in (stable, canary)])
        for (_, _, version_id), traffic in ((stable, 90), (canary, 10)):
            deployments.append(
                {"endpoint_id": endpoint_id, "version_id": version_id, "traffic": traffic,
                 "shadow": False, "max_batch_size": 64, "timeout_ms": 10_000,
                 "created_at": when, "created_by": "bench"}
            )  # fmt: skip
    _insert(conn, DeploymentRow, deployments)
    return list(zip(names, refs, strict=True))


def _job(key: str, rng: random.Random, now: datetime, versions: list[Version]) -> dict[str, Any]:
    name, version, _ = rng.choice(versions)
    state = rng.choice(JOB_STATES)
    rows = rng.randrange(1_000, 1_000_000)
    done = rows if state in ("succeeded", "partially_succeeded") else rows // 2
    return {
        "id": f"bj_{key}", "model_ref": f"{name}@prod", "model_version": f"{name}:{version}",
        "model_sha256": _hex(rng), "state": state,
        "spec": {"inputs": [f"/data/{name}/*.parquet"], "output": f"/out/{name}/{key}",
                 "format": "parquet", "chunk_rows": 10_000, "engine": "local"},
        "progress": {"rows_total": rows, "rows_done": done, "rows_failed": 0},
        "message": "", "cancel_requested": False, "created_at": _when(rng, now),
        "created_by": "bench",
    }  # fmt: skip


def _pipelines(conn: Connection, rng: random.Random, now: datetime, n: int, tag: str) -> None:
    """Registered pipelines, and ``n`` runs of them with their step records, in slices."""
    graphs = seed_runs.graphs()
    if not tag:  # a pipeline's versions are unique by name: registered once per store
        _insert(conn, PipelineRow, seed_runs.registered(graphs, now))
    for first in range(0, n, 1000):
        made = [
            seed_runs.run(i, f"{tag}{i:012x}", rng, _when(rng, now), graphs)
            for i in range(first, min(first + 1000, n))
        ]
        _insert(conn, PipelineRunRow, [row for row, _ in made])
        _insert(conn, PipelineStepRow, [step for _, steps in made for step in steps])


def _alert(rng: random.Random, now: datetime, monitors: list[str]) -> dict[str, Any]:
    opened = _when(rng, now)
    resolved = rng.random() < 0.7
    return {
        "monitor_id": rng.choice(monitors), "key": f"skew:f{rng.randrange(8)}",
        "state": "resolved" if resolved else "open", "opened_at": opened,
        "resolved_at": opened + timedelta(hours=2) if resolved else None,
        "value": round(rng.uniform(0.3, 0.9), 3), "threshold": 0.3, "details": {},
        "deliveries": [],
    }  # fmt: skip


def _audit(rng: random.Random, now: datetime) -> dict[str, Any]:
    return {
        "at": _when(rng, now), "actor": rng.choice(["alice", "bob", "ci", "local"]),
        "action": rng.choice(ACTIONS), "resource_type": "model",
        "resource": f"model-{rng.randrange(1000):05d}@prod", "before": None,
        "after": {"version": 2},
    }  # fmt: skip
