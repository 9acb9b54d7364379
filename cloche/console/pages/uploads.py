"""Upload a model file from the models page: the REST upload's staging and registry service.

The form posts multipart with htmx, which sends the CSRF token in its header (the gate reads no
multipart body); the body may reach the upload cap (``console.app`` marks this route).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from fastapi import UploadFile
from starlette.datastructures import UploadFile as StarletteUpload
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloche.api.uploads import UploadForm, stage_model
from cloche.auth.roles import Permission, Principal, authorize
from cloche.errors import BadRequest, ClocheError
from cloche.registry import upload
from cloche.registry.entities import ModelVersion
from cloche.registry.inspection import ChildInspector

from ..render import SESSION_KEY, html

UPLOAD_PATH = "/models/upload"
SWAP = {"HX-Retarget": "#upload-form", "HX-Reswap": "outerHTML"}


async def upload_model(request: Request) -> Response:
    """Upload one model file as the next version of a model (the API's roles and errors)."""
    principal: Principal = request.scope[SESSION_KEY].principal
    fields: dict[str, str] = {"name": "", "aliases": "", "description": ""}
    try:
        authorize(principal, Permission.WRITE)
        async with request.form(max_files=1, max_fields=10) as form:
            fields = {key: str(form.get(key, "")).strip() for key in fields}
            part = form.get("file")
            if not isinstance(part, StarletteUpload) or not part.filename:
                raise BadRequest("choose a model file to upload", hint="e.g. model.joblib")
            version = await asyncio.to_thread(_upload, request, principal, fields, part)
    except ClocheError as error:
        context = {"upload_form": fields, "upload_error": error}
        return html(request, "_upload_form.html", context, status=error.http_status, headers=SWAP)
    done = f"uploaded {version.ref} ({version.framework})"
    context = {"upload_form": {"name": "", "aliases": "", "description": ""}, "uploaded": done}
    return html(request, "_upload_form.html", context, status=201, headers=SWAP)


def _upload(
    request: Request, principal: Principal, fields: dict[str, str], part: StarletteUpload
) -> ModelVersion:
    state: Any = request.app.state
    form = UploadForm(
        name=fields["name"],
        files=[cast(UploadFile, part)],  # FastAPI's UploadFile is Starlette's, subclassed
        aliases=[fields["aliases"]] if fields["aliases"] else None,
        description=fields["description"],
    )
    with stage_model(state.store, form) as staged:
        return upload.upload_model(
            state.store,
            source=staged.source,
            name=form.name,
            principal=principal,
            inspector=ChildInspector(timeout_s=state.settings.registry.inspect_timeout_s),
            aliases=form.aliases,
            description=form.description,
        )


ROUTES = [Route(UPLOAD_PATH, upload_model, methods=["POST"])]
