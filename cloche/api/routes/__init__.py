"""One module per resource; each holds one router that ``cloche.api.app`` includes."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute

from cloche.api.schemas import ERROR_RESPONSES

UPLOAD_CAP_KEY = "x-cloche-body-cap"
# ``openapi_extra`` of a route that takes files: its body may reach the upload cap rather than
# the small JSON one (cloche/guards.py reads the mark; the OpenAPI document shows it).
UPLOAD: dict[str, Any] = {UPLOAD_CAP_KEY: "CLOCHE_STORE__MAX_UPLOAD_MB"}


class DocumentedRoute(APIRoute):
    """A route whose OpenAPI summary is the first line of its handler's docstring."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        doc = inspect.cleandoc(endpoint.__doc__ or "")
        if doc and kwargs.get("summary") is None:
            kwargs["summary"] = doc.splitlines()[0].rstrip(".")
        super().__init__(path, endpoint, **kwargs)


def make_router(prefix: str, tag: str) -> APIRouter:
    return APIRouter(
        prefix=prefix, tags=[tag], route_class=DocumentedRoute, responses=ERROR_RESPONSES
    )
