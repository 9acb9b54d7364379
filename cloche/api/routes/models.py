"""The model registry: upload, list, show, alias, baseline, download and delete."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import IO, Annotated, Any

from fastapi import Depends, File, Path, Query, Request, Response, UploadFile
from fastapi.responses import StreamingResponse

from cloche.api.deps import LabelFilter, Reader, SettingsDep, StoreDep, Writer
from cloche.api.paging import PageParams, items
from cloche.api.routes import UPLOAD, make_router
from cloche.api.schemas import AliasTarget
from cloche.api.uploads import UploadForm, stage_file, stage_model
from cloche.registry import listing, upload
from cloche.registry import service as registry
from cloche.registry.entities import (
    DeleteResult,
    ModelDetail,
    ModelSummary,
    ModelVersion,
    ResidentModel,
)
from cloche.registry.inspection import ChildInspector
from cloche.registry.refs import check_name

router = make_router("/models", "models")
CHUNK = 1024 * 1024


def model_name(name: Annotated[str, Path(description="model name, e.g. churn")]) -> str:
    return check_name(name)


def version_ref(
    name: Annotated[str, Depends(model_name)],
    version: Annotated[str, Path(description="a version number, latest, or @alias")],
) -> str:
    """The registry reference a ``{name}/versions/{version}`` path names."""
    if version == "latest":
        return name
    if version.startswith("@"):
        return f"{name}@{version[1:]}"
    return f"{name}:{version}"


ModelName = Annotated[str, Depends(model_name)]
VersionRef = Annotated[str, Depends(version_ref)]


@router.get("")
def list_models(
    _: Reader,
    store: StoreDep,
    labels: LabelFilter,
    page: PageParams,
    request: Request,
    response: Response,
    search: Annotated[str | None, Query(description="the same as q (older clients)")] = None,
) -> list[ModelSummary]:
    """List models, optionally those with a version carrying every label given.

    Sort keys: name (default), created, updated, latest_version."""
    if search and not page.q:
        page = replace(page, q=search)
    return items(listing.page_models(store, page, labels=labels), request, response)


@router.get("/loaded")
def loaded_models(
    _: Reader,
    store: StoreDep,
    all_: Annotated[
        bool, Query(alias="all", description="also models loaded before and evicted since")
    ] = False,
) -> list[ResidentModel]:
    """Models the serving workers hold in memory, one row per model per worker: size, last
    use, loads, evictions and the last load's stages."""
    return registry.loaded_models(store, resident_only=not all_)


@router.post("", status_code=201, openapi_extra=UPLOAD)
def upload_model(
    principal: Writer,
    store: StoreDep,
    settings: SettingsDep,
    form: Annotated[UploadForm, Depends()],
) -> ModelVersion:
    """Upload a model file or folder as the next version of a model.

    Formats whose loading runs code (pickle, joblib, TorchScript, custom Python) need the
    publisher or admin role; the model is loaded in a separate process that holds no secrets.
    """
    with stage_model(store, form) as staged:
        return upload.upload_model(
            store,
            source=staged.source,
            name=form.name,
            principal=principal,
            inspector=ChildInspector(timeout_s=settings.registry.inspect_timeout_s),
            framework=form.framework,
            sample=staged.sample,
            baseline=staged.baseline,
            aliases=form.aliases,
            labels=form.labels,
            metrics=form.metrics,
            description=form.description,
        )


@router.get("/{name}")
def get_model(_: Reader, store: StoreDep, name: ModelName) -> ModelDetail:
    """Show a model with all its versions and aliases."""
    return registry.get_model(store, name)


@router.delete("/{name}")
def delete_model(principal: Writer, store: StoreDep, name: ModelName) -> DeleteResult:
    """Delete a model with all its versions and files."""
    return registry.delete(store, ref=name, actor=principal.actor)


@router.get("/{name}/versions/{version}")
def get_version(_: Reader, store: StoreDep, ref: VersionRef) -> ModelVersion:
    """Show one version: files, hashes, signature, metrics, labels, aliases."""
    return registry.get_version(store, ref)


@router.delete("/{name}/versions/{version}")
def delete_version(principal: Writer, store: StoreDep, ref: VersionRef) -> DeleteResult:
    """Delete one version and its files."""
    return registry.delete(store, ref=ref, actor=principal.actor)


@router.put("/{name}/aliases/{alias}")
def set_alias(
    principal: Writer, store: StoreDep, name: ModelName, alias: str, target: AliasTarget
) -> ModelVersion:
    """Point an alias at a version (the move is audited)."""
    return registry.set_alias(store, ref=target.ref_for(name), alias=alias, actor=principal.actor)


@router.delete("/{name}/aliases/{alias}", status_code=204, response_class=Response)
def remove_alias(principal: Writer, store: StoreDep, name: ModelName, alias: str) -> None:
    """Remove an alias; the version it pointed at stays."""
    registry.remove_alias(store, name=name, alias=alias, actor=principal.actor)


@router.put("/{name}/versions/{version}/baseline", openapi_extra=UPLOAD)
def attach_baseline(
    principal: Writer,
    store: StoreDep,
    ref: VersionRef,
    file: Annotated[UploadFile, File(description="a .parquet, .csv or .jsonl dataset")],
) -> dict[str, Any]:
    """Attach (or replace) the baseline dataset of a version."""
    with stage_file(store, file) as path:
        return registry.attach_baseline(store, ref=ref, path=path, actor=principal.actor)


@router.get(
    "/{name}/versions/{version}/files/{path:path}",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download_file(_: Reader, store: StoreDep, ref: VersionRef, path: str) -> StreamingResponse:
    """Download one file of a version; X-Content-SHA256 is its recorded hash."""
    source, meta = registry.open_artifact_file(store, ref, path)
    return StreamingResponse(
        _chunks(source),
        media_type="application/octet-stream",
        headers={"X-Content-SHA256": meta["sha256"]},
    )


def _chunks(source: IO[bytes]) -> Iterator[bytes]:
    # No Content-Length from the recorded size: a tampered file may differ, and the client
    # verifies the hash of what it received anyway.
    with source:
        while chunk := source.read(CHUNK):
            yield chunk
