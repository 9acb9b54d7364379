"""The model registry: list, show, alias, load and delete model versions (upload: upload.py).

Every registry behaviour lives here once; REST handlers, both SDK transports and the CLI call
these functions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from cloche import audit
from cloche.errors import (
    AliasNotFound,
    ArtifactNotFound,
    InvalidInput,
    ModelInUse,
    ModelNotFound,
    VersionNotFound,
)
from cloche.lineage.links import forget as forget_lineage
from cloche.lineage.links import record as record_lineage
from cloche.registry import baselines
from cloche.registry.entities import (
    DeleteResult,
    ModelDetail,
    ModelSummary,
    ModelVersion,
    ResidentModel,
)
from cloche.registry.refs import ModelRef, check_alias, check_name, parse_ref
from cloche.runtimes.base import LoadedModel
from cloche.store.paging import collect
from cloche.store.store import Store
from cloche.store.tables import (
    AliasRow,
    DeploymentRow,
    EndpointRow,
    ModelRow,
    VersionRow,
    utcnow,
)

LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def check_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """Labels are short keys with string values; say which one is not."""
    out = {}
    for key, value in labels.items():
        if not LABEL_KEY_RE.match(str(key)):
            raise InvalidInput(
                f"invalid label key {key!r}", hint="use letters, digits, '-', '_' or '.'"
            )
        if len(str(value)) > 256:
            raise InvalidInput(f"label {key!r} is longer than 256 characters")
        out[str(key)] = str(value)
    return out


def _load_model_row(session: Session, name: str) -> ModelRow:
    model = session.scalar(
        select(ModelRow)
        .where(ModelRow.name == name)
        .options(selectinload(ModelRow.versions), selectinload(ModelRow.aliases))
    )
    if model is None:
        raise ModelNotFound(
            f"model {name!r} does not exist",
            hint="list models with `cloche models list`, or upload one with `cloche models upload`",
        )
    return model


def _resolve(session: Session, ref: ModelRef) -> tuple[ModelRow, VersionRow]:
    model = _load_model_row(session, ref.name)
    if ref.alias is not None:
        alias = next((a for a in model.aliases if a.alias == ref.alias), None)
        if alias is None:
            known = ", ".join(sorted(a.alias for a in model.aliases)) or "none"
            raise AliasNotFound(
                f"model {ref.name!r} has no alias {ref.alias!r} (aliases: {known})",
                hint=f"set it with `cloche models alias {ref.name}:VERSION {ref.alias}`",
            )
        return model, alias.version
    if not model.versions:
        raise VersionNotFound(f"model {ref.name!r} has no versions")
    if ref.version is None:
        return model, model.versions[-1]
    version = next((v for v in model.versions if v.version == ref.version), None)
    if version is None:
        have = ", ".join(str(v.version) for v in model.versions)
        raise VersionNotFound(
            f"model {ref.name!r} has no version {ref.version} (versions: {have})",
            hint=f"see `cloche models show {ref.name}`",
        )
    return model, version


def resolve_version_row(session: Session, ref: ModelRef) -> VersionRow:
    """The version row a parsed reference names, inside the caller's transaction."""
    return _resolve(session, ref)[1]


def version_entity(model: ModelRow, row: VersionRow) -> ModelVersion:
    return ModelVersion(
        name=model.name,
        version=row.version,
        framework=row.framework,
        sha256=row.sha256,
        size_bytes=row.size_bytes,
        resident_bytes=row.resident_bytes,
        files=row.files,
        signature=row.signature,
        metrics=row.metrics,
        labels=row.labels,
        description=row.description,
        aliases=sorted(a.alias for a in model.aliases if a.version_id == row.id),
        baseline=baselines.public_meta(row.baseline),
        created_at=audit.as_utc(row.created_at),
        created_by=row.created_by,
    )


def _summary_values(model: ModelRow) -> dict[str, Any]:
    latest = model.versions[-1]
    return {
        "name": model.name,
        "description": model.description,
        "latest_version": latest.version,
        "version_count": len(model.versions),
        "framework": latest.framework,
        "aliases": {
            a.alias: a.version.version for a in sorted(model.aliases, key=lambda a: a.alias)
        },
        "labels": latest.labels,
        "created_at": audit.as_utc(model.created_at),
        "updated_at": audit.as_utc(model.updated_at),
    }


def _alias_name(row: AliasRow) -> str:
    return row.alias


def get_version(store: Store, ref: str) -> ModelVersion:
    """The version a reference names (``name`` means the newest)."""
    with store.transaction() as session:
        model, version = _resolve(session, parse_ref(ref))
        return version_entity(model, version)


def get_model(store: Store, name: str) -> ModelDetail:
    """A model with every version and alias."""
    parsed = parse_ref(name)
    with store.transaction() as session:
        model = _load_model_row(session, parsed.name)
        if not model.versions:
            raise VersionNotFound(f"model {parsed.name!r} has no versions")
        return ModelDetail(
            **_summary_values(model),
            versions=[version_entity(model, v) for v in model.versions],
        )


def list_models(
    store: Store, *, labels: Mapping[str, str] | None = None, search: str | None = None
) -> list[ModelSummary]:
    """Models by name; ``labels`` keeps those with a version carrying all of them. Every
    page of ``listing.page_models``, the one query of the registry's listings."""
    from cloche.registry.listing import page_models  # it imports check_labels from here

    return collect(lambda page: page_models(store, page, labels=labels), q=search)


def set_alias(store: Store, *, ref: str, alias: str, actor: str = "local") -> ModelVersion:
    """Point ``alias`` at the version ``ref`` names, recording the move in the audit log."""
    check_alias(alias)
    with store.transaction() as session:
        model, version = _resolve(session, parse_ref(ref))
        point_alias(session, model, alias, version, actor=actor)
        session.flush()
        session.refresh(model)
        return version_entity(model, version)


def point_alias(
    session: Session, model: ModelRow, alias: str, version: VersionRow, *, actor: str
) -> None:
    row = next((a for a in model.aliases if a.alias == alias), None)
    before = {"version": row.version.version} if row is not None else None
    if row is None:
        row = AliasRow(model_id=model.id, alias=alias, version_id=version.id)
        model.aliases.append(row)
    else:
        row.version_id, row.version, row.updated_at = version.id, version, utcnow()
    audit.record(
        session,
        actor=actor,
        action="alias.move",
        resource_type="model",
        resource=f"{model.name}@{alias}",
        before=before,
        after={"version": version.version},
    )
    record_lineage(session, "model_version", f"{model.name}:{version.version}", "alias", alias)


def remove_alias(store: Store, *, name: str, alias: str, actor: str = "local") -> None:
    """Remove an alias; the version it pointed at stays."""
    with store.transaction() as session:
        model = _load_model_row(session, check_name(name))
        row = next((a for a in model.aliases if a.alias == alias), None)
        if row is None:
            raise AliasNotFound(f"model {name!r} has no alias {alias!r}")
        audit.record(
            session,
            actor=actor,
            action="alias.remove",
            resource_type="model",
            resource=f"{name}@{alias}",
            before={"version": row.version.version},
        )
        model.aliases.remove(row)


def delete(store: Store, *, ref: str, actor: str = "local") -> DeleteResult:
    """Delete a whole model (bare name) or one version (``name:3`` or ``name@alias``)."""
    parsed = parse_ref(ref)
    whole = parsed.version is None and parsed.alias is None
    with store.transaction() as session:
        if whole:
            model = _load_model_row(session, parsed.name)
            doomed = list(model.versions)
        else:
            model, version = _resolve(session, parsed)
            doomed = [version]
        _refuse_if_deployed(session, model.name, doomed)
        keys = [v.artifact_key for v in doomed] + [
            v.baseline["key"] for v in doomed if v.baseline and v.baseline.get("key")
        ]
        numbers = [v.version for v in doomed]
        forget_lineage(session, "model_version", [f"{model.name}:{n}" for n in numbers])
        for v in doomed:
            for alias in [a for a in model.aliases if a.version_id == v.id]:
                model.aliases.remove(alias)
            model.versions.remove(v)
        model_deleted = not model.versions
        if model_deleted:
            session.delete(model)
        audit.record(
            session,
            actor=actor,
            action="model.delete",
            resource_type="model",
            resource=str(parsed) if not whole else parsed.name,
            before={"versions": numbers},
        )
    for key in keys:
        store.artifacts.delete(key)
    return DeleteResult(name=parsed.name, deleted_versions=numbers, model_deleted=model_deleted)


def attach_baseline(store: Store, *, ref: str, path: Path, actor: str = "local") -> dict[str, Any]:
    """Attach (or replace) the baseline dataset of the version ``ref`` names."""
    parsed = parse_ref(ref)
    meta = baselines.store_baseline(store, name=parsed.name, path=Path(path))
    old_key = None
    try:
        with store.transaction() as session:
            _model, version = _resolve(session, parsed)
            old = version.baseline
            old_key = old.get("key") if old else None
            version.baseline = meta
            audit.record(
                session,
                actor=actor,
                action="baseline.attach",
                resource_type="model",
                resource=f"{parsed.name}:{version.version}",
                before=baselines.public_meta(old),
                after=baselines.public_meta(meta),
            )
    except BaseException:
        store.artifacts.delete(meta["key"])
        raise
    if old_key:
        store.artifacts.delete(old_key)
    return baselines.public_meta(meta) or {}


def _refuse_if_deployed(session: Session, name: str, versions: list[VersionRow]) -> None:
    rows = session.execute(
        select(VersionRow.version, EndpointRow.name)
        .join(DeploymentRow, DeploymentRow.version_id == VersionRow.id)
        .join(EndpointRow, EndpointRow.id == DeploymentRow.endpoint_id)
        .where(VersionRow.id.in_([v.id for v in versions]))
    ).all()
    if rows:
        where = ", ".join(sorted(f"{name}:{v} on {ep!r}" for v, ep in rows))
        first_version, first_endpoint = rows[0]
        raise ModelInUse(
            f"cannot delete while deployed: {where}",
            hint=f"undeploy first: `cloche endpoints undeploy {first_endpoint} "
            f"{name}:{first_version}`",
        )


def artifact_location(store: Store, ref: str) -> tuple[ModelVersion, str]:
    """A version and the artifact key its files live under (for serving them to clients)."""
    with store.transaction() as session:
        model, version = _resolve(session, parse_ref(ref))
        return version_entity(model, version), version.artifact_key


def open_artifact_file(store: Store, ref: str, rel: str) -> tuple[IO[bytes], dict[str, Any]]:
    """An open binary file of a version, and its recorded {sha256, size}."""
    version, key = artifact_location(store, ref)
    meta = version.files.get(rel)
    if meta is None:
        raise ArtifactNotFound(f"{version.ref} has no file {rel!r}")
    return store.artifacts.open(key, rel), meta


def resident_size(store: Store, ref: str, *, timeout_s: float = 300.0) -> tuple[str, int]:
    """The version's resident size in bytes (and its ``name:version``), measured now in a child
    process and recorded on the version if it was never measured."""
    from cloche.registry.resident import measure_resident_bytes

    version, key = artifact_location(store, ref)
    if version.resident_bytes is not None:
        return version.ref, version.resident_bytes
    folder = store.artifacts.local_dir(key, version.files)
    measured = measure_resident_bytes(version.framework, folder, timeout_s=timeout_s)
    with store.transaction() as session:
        row = resolve_version_row(session, parse_ref(version.ref))
        row.resident_bytes = measured
    return version.ref, measured


def loaded_models(store: Store, *, resident_only: bool = True) -> list[ResidentModel]:
    """Models the serving workers of every server on this home hold (their state files, see
    serving/residency.py); with ``resident_only`` False, also those evicted since."""
    from cloche.serving.residency import loaded_models as rows

    return [
        ResidentModel(
            **{
                **row,
                "last_used": datetime.fromtimestamp(row["last_used"], UTC)
                if row.get("last_used")
                else None,
            }
        )
        for row in rows(store.home, resident_only=resident_only)
    ]


def load_model(store: Store, ref: str) -> LoadedModel:
    """Load the version ``ref`` names, after verifying every file's hash."""
    from cloche.runtimes import get_runtime

    version, key = artifact_location(store, ref)
    folder = store.artifacts.local_dir(key, version.files)
    return get_runtime(version.framework).load(folder)
