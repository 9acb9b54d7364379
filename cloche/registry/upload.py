"""Registering a model version: check the upload and who sends it, hash and store the files,
load them once (through an inspector) to infer the signature, then number the version in one
transaction.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from cloche import audit
from cloche.auth.roles import Principal
from cloche.errors import Conflict, InvalidInput, PayloadTooLarge
from cloche.lineage.links import record as record_lineage
from cloche.registry import baselines
from cloche.registry.entities import ModelVersion
from cloche.registry.inspection import Inspector, InspectRequest
from cloche.registry.refs import check_alias, check_name
from cloche.registry.service import check_labels, point_alias, version_entity
from cloche.registry.trust import authorize_upload
from cloche.store.artifacts import Progress, combined_digest, list_source_files
from cloche.store.store import Store
from cloche.store.tables import ModelRow, VersionRow, utcnow


def upload_model(
    store: Store,
    *,
    source: Path,
    name: str,
    principal: Principal,
    inspector: Inspector,
    framework: str | None = None,
    sample: Path | None = None,
    baseline: Path | None = None,
    aliases: Sequence[str] = (),
    labels: Mapping[str, str] | None = None,
    metrics: Mapping[str, float] | None = None,
    description: str = "",
    progress: Progress | None = None,
) -> ModelVersion:
    """Register a model file or folder as the next version of ``name``.

    ``inspector`` loads the model to infer its signature: ``inspect_here`` for the local owner,
    a ``ChildInspector`` in a server (see ``inspection.py``).
    """
    from cloche.registry.detect import detect_framework

    check_name(name)
    aliases = [check_alias(a) for a in aliases]
    labels, metrics = check_labels(labels or {}), check_metrics(metrics or {})
    source = Path(source)
    _check_size(store, source)
    framework = framework or detect_framework(source)
    # Detection only reads bytes; from here on the upload is stored and loaded, which a role
    # without the right to publish code must not reach for a format whose loading runs code.
    authorize_upload(principal, framework=framework, source=source)
    actor = principal.actor
    key = f"models/{name}/{uuid.uuid4().hex}"
    files = store.artifacts.put(key, source, progress=progress)
    baseline_meta = None
    try:
        signature = inspector(
            InspectRequest(
                framework=framework,
                model_path=store.artifacts.local_dir(key, files),
                sample=sample,
                baseline=baseline,
            )
        )
        if baseline is not None:
            baseline_meta = baselines.store_baseline(store, name=name, path=baseline)
        row = VersionRow(
            framework=framework,
            artifact_key=key,
            files=files,
            sha256=combined_digest(files),
            size_bytes=sum(f["size"] for f in files.values()),
            signature=signature.to_dict(),
            metrics=metrics,
            labels=labels,
            description=description,
            baseline=baseline_meta,
            created_by=actor,
        )
        return _insert_version(store, name=name, row=row, aliases=aliases, actor=actor)
    except BaseException:
        store.artifacts.delete(key)
        if baseline_meta:
            store.artifacts.delete(baseline_meta["key"])
        raise


def _check_size(store: Store, source: Path) -> None:
    total = sum(p.stat().st_size for p in list_source_files(source).values())
    if total > store.max_upload_bytes:
        raise PayloadTooLarge(
            f"{source.name} is {human_size(total)}, over the upload limit of "
            f"{human_size(store.max_upload_bytes)}",
            hint="raise CLOCHE_STORE__MAX_UPLOAD_MB if this model is expected to be this large",
        )


def human_size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _insert_version(
    store: Store, *, name: str, row: VersionRow, aliases: Sequence[str], actor: str
) -> ModelVersion:
    # Two uploads of one name may race for the next number; the unique key decides, we retry.
    for attempt in range(5):
        try:
            with store.transaction() as session:
                model = session.scalar(select(ModelRow).where(ModelRow.name == name))
                if model is None:
                    model = ModelRow(name=name, description=row.description, created_by=actor)
                    session.add(model)
                    session.flush()
                latest = session.scalar(
                    select(func.max(VersionRow.version)).where(VersionRow.model_id == model.id)
                )
                version = VersionRow(
                    **_row_values(row), model_id=model.id, version=(latest or 0) + 1
                )
                session.add(version)
                model.updated_at = utcnow()
                session.flush()
                audit.record(
                    session,
                    actor=actor,
                    action="model.upload",
                    resource_type="model",
                    resource=f"{name}:{version.version}",
                    after={"framework": row.framework, "sha256": row.sha256},
                )
                record_lineage(session, "model_version", f"{name}:{version.version}", "created")
                for alias in aliases:
                    point_alias(session, model, alias, version, actor=actor)
                session.flush()
                session.refresh(model)
                return version_entity(model, version)
        except IntegrityError as exc:
            if attempt == 4:
                raise Conflict(
                    f"could not allocate a version number for {name}; try again"
                ) from exc
    raise AssertionError("unreachable")


def _row_values(row: VersionRow) -> dict[str, Any]:
    columns: tuple[str, ...] = ("framework", "artifact_key", "files", "sha256", "size_bytes")
    columns += ("signature", "metrics", "labels", "description", "baseline", "created_by")
    return {c: getattr(row, c) for c in columns}


def check_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InvalidInput(f"metric {key!r} must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise InvalidInput(f"metric {key!r} must be finite, got {value!r}")
        out[str(key)] = number
    return out
