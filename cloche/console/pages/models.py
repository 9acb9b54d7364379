"""Models: the list (search, sort, pages), a model's page, its lineage, and moving an alias."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from cloche.auth.roles import Permission, Principal, allows, authorize
from cloche.errors import BadRequest, ClocheError, VersionNotFound
from cloche.lineage import service as lineage
from cloche.registry import service as registry
from cloche.registry.entities import ModelDetail, ModelVersion
from cloche.registry.listing import page_models
from cloche.registry.refs import check_name

from ..paging import fetch_page, parse_listing
from ..render import SESSION_KEY, html, is_htmx, page

SORTS = ("name", "-name", "updated", "-updated", "versions", "-versions")
# "versions" orders by the newest version number, which counts the versions a model has had.
SORT_KEYS = {"name": "name", "updated": "updated", "versions": "latest_version"}


def _reader(request: Request) -> Principal:
    principal: Principal = request.scope[SESSION_KEY].principal
    authorize(principal, Permission.READ)
    return principal


async def list_models(request: Request) -> Response:
    principal = _reader(request)
    listing = parse_listing(request.query_params, sorts=SORTS, default="name")
    store = request.app.state.store
    rows = await asyncio.to_thread(
        fetch_page, listing, lambda asked: page_models(store, asked), sorts=SORT_KEYS
    )
    context = {
        "page": rows,
        "sorts": SORTS,
        "can_write": allows(principal, Permission.WRITE),
        "upload_form": {"name": "", "aliases": "", "description": ""},
    }
    return page(request, "models.html", "_models_table.html", context)


def _selected(model: ModelDetail, raw: str | None) -> ModelVersion:
    """The version ``?version=`` names, else the newest."""
    if raw is None or raw == "":
        return model.versions[-1]
    if not raw.isdigit():
        raise BadRequest(f"version {raw!r} is not a version number", hint="e.g. ?version=2")
    for version in model.versions:
        if version.version == int(raw):
            return version
    raise VersionNotFound(
        f"model {model.name!r} has no version {raw}",
        hint=f"its versions: {', '.join(str(v.version) for v in model.versions)}",
    )


def _model_context(
    principal: Principal, model: ModelDetail, version: ModelVersion, **extra: Any
) -> dict[str, Any]:
    return {
        "model": model,
        "version": version,
        "can_write": allows(principal, Permission.WRITE),
        "can_deploy": allows(principal, Permission.DEPLOY),
        "deploy_to": {"endpoint": "", "traffic": "", "shadow": ""},
        "form": {"alias": "", "version": str(version.version)},
        "form_error": None,
        **extra,
    }


async def show_model(request: Request) -> Response:
    principal = _reader(request)
    name = check_name(request.path_params["name"])
    model = await asyncio.to_thread(registry.get_model, request.app.state.store, name)
    version = _selected(model, request.query_params.get("version"))
    context = _model_context(principal, model, version)
    return page(request, "model.html", "_model_main.html", context)


async def show_lineage(request: Request) -> Response:
    _reader(request)
    name = check_name(request.path_params["name"])
    ref = f"{name}:{request.path_params['version']}"
    found = await asyncio.to_thread(lineage.get_lineage, request.app.state.store, ref)
    return page(request, "lineage.html", "_lineage.html", {"lineage": found, "name": name})


async def move_alias(request: Request) -> Response:
    """Point an alias at a version: the registry service, with the API's role and errors."""
    principal: Principal = request.scope[SESSION_KEY].principal
    name = check_name(request.path_params["name"])
    form = await request.form()
    fields = {"alias": str(form.get("alias", "")).strip(), "version": str(form.get("version", ""))}
    store = request.app.state.store
    try:
        authorize(principal, Permission.WRITE)
        if not fields["version"].isdigit():
            raise BadRequest("choose a version number", hint="pick one of the model's versions")
        ref = f"{name}:{fields['version']}"
        await asyncio.to_thread(
            registry.set_alias, store, ref=ref, alias=fields["alias"], actor=principal.actor
        )
    except ClocheError as error:
        return _alias_error(request, name, fields, error)
    if not is_htmx(request):  # post/redirect/get: a reload does not move it again
        return RedirectResponse(f"/console/models/{name}", status_code=303)
    model = await asyncio.to_thread(registry.get_model, store, name)
    moved = f"{fields['alias']} now points at version {fields['version']}"
    context = _model_context(principal, model, model.versions[-1], notice=moved)
    return html(request, "_model_main.html", context)


def _alias_error(
    request: Request, name: str, fields: dict[str, str], error: ClocheError
) -> Response:
    """The form again, the message beside it (htmx swaps only the form)."""
    context = {"model_name": name, "form": fields, "form_error": error, "can_write": True}
    swap = {"HX-Retarget": "#alias-form", "HX-Reswap": "outerHTML"}
    if is_htmx(request):
        return html(request, "_alias_form.html", context, status=error.http_status, headers=swap)
    return html(request, "alias_form_page.html", context, status=error.http_status)


ROUTES = [
    Route("/models", list_models, methods=["GET"]),
    Route("/models/{name}", show_model, methods=["GET"]),
    Route("/models/{name}/versions/{version:int}/lineage", show_lineage, methods=["GET"]),
    Route("/models/{name}/aliases", move_alias, methods=["POST"]),
]
