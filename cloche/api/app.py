"""The control-plane app: routes under /api/v1, one error shape, security guards around it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from cloche import __version__
from cloche.api import static
from cloche.api.authn import BearerAuth
from cloche.api.lineage_context import PipelineStepContext
from cloche.api.routes import (
    UPLOAD_CAP_KEY,
    audit,
    batch,
    edge,
    endpoints,
    health,
    lineage,
    logs,
    models,
    monitors,
    pipeline_schedules,
    pipelines,
    tokens,
)
from cloche.config import Settings
from cloche.errors import (
    BadRequest,
    ClocheError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from cloche.guards import MULTIPART_OVERHEAD, BodyCap, BodySizeLimit, HostOriginGuard
from cloche.hosts import is_loopback
from cloche.store.store import Store

API_PREFIX = "/api/v1"
OPEN_PATHS = frozenset({f"{API_PREFIX}/health"})  # liveness, for load balancers: no token
DOCS_URL = "/api/docs"
ROUTERS = (
    health.router,
    models.router,
    endpoints.router,
    batch.router,
    monitors.router,
    pipelines.router,
    edge.router,
    logs.router,
    tokens.router,
    audit.router,
    pipeline_schedules.router,
    lineage.router,
)
_BY_STATUS: dict[int, type[ClocheError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
}


def create_app(settings: Settings, store: Store | None = None) -> FastAPI:
    """The REST API over ``store`` (opened from ``settings`` when not given, closed at exit)."""
    owned = store is None
    app_store = store if store is not None else Store.open(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:
            app_store.close()

    app = FastAPI(
        title="cloche",
        version=__version__,
        summary="Self-hosted model serving: control-plane API",
        openapi_url="/api/openapi.json",
        docs_url=None,  # static.add_docs_route: Swagger UI from vendored files, not a CDN
        redoc_url=None,  # ReDoc would load from a CDN; Swagger UI is the one docs page
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = app_store
    app.add_exception_handler(ClocheError, _cloche_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_error)
    for router in ROUTERS:
        app.include_router(router, prefix=API_PREFIX)
    app.include_router(static.router)  # outside API_PREFIX: public files, no token
    static.add_docs_route(app, DOCS_URL)
    # The last middleware added runs first: Host/Origin, then the token (before any byte of
    # the body is read), then the body caps, then the pipeline step's header, then routing.
    app.add_middleware(PipelineStepContext)
    app.add_middleware(
        BodySizeLimit,
        cap=BodyCap(settings.max_json_bytes, "CLOCHE_SERVER__MAX_JSON_KB"),
        upload_cap=BodyCap(
            settings.max_upload_bytes + MULTIPART_OVERHEAD, "CLOCHE_STORE__MAX_UPLOAD_MB"
        ),
        upload_routes=_upload_routes(),
    )
    app.add_middleware(BearerAuth, store=app_store, prefix=API_PREFIX, open_paths=OPEN_PATHS)
    app.add_middleware(HostOriginGuard, loopback_only=is_loopback(settings.server.host))
    return app


def _upload_routes() -> list[tuple[str, re.Pattern[str]]]:
    """(method, path pattern) of each route marked as taking files (``routes.UPLOAD``)."""
    return [
        (method, compile_path(API_PREFIX + route.path)[0])
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute) and UPLOAD_CAP_KEY in (route.openapi_extra or {})
        for method in route.methods or ()
    ]


def error_response(error: ClocheError, status: int | None = None) -> JSONResponse:
    """The one JSON error shape: ``{"error": {"code", "message", "hint"?, "details"?}}``."""
    status = status or int(error.http_status)
    headers = {"WWW-Authenticate": "Bearer"} if status == HTTPStatus.UNAUTHORIZED else None
    return JSONResponse(error.to_dict(), status_code=status, headers=headers)


async def _cloche_error(_request: Request, exc: ClocheError) -> JSONResponse:
    return error_response(exc)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    # Only where and what: never echo the input, which may be a file or a secret.
    problems = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
        for e in exc.errors()
    ]
    summary = "; ".join(f"{'.'.join(p['loc'])}: {p['msg']}" for p in problems)
    error = InvalidInput(
        f"invalid request: {summary}",
        hint=f"see {DOCS_URL} for what {request.method} {request.url.path} accepts",
        errors=problems,
    )
    return error_response(error)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    where = f"{request.method} {request.url.path}"
    error: ClocheError
    if exc.status_code == HTTPStatus.NOT_FOUND:
        error = NotFound(f"no such route: {where}", hint=f"the routes are listed at {DOCS_URL}")
    elif exc.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
        allowed = (exc.headers or {}).get("Allow", "")
        error = BadRequest(f"method not allowed: {where}", hint=f"this path accepts: {allowed}")
    else:
        default = ClocheError if exc.status_code >= 500 else BadRequest
        hint = f"see {DOCS_URL} for what {where} accepts"
        error = _BY_STATUS.get(exc.status_code, default)(str(exc.detail), hint=hint)
    response = error_response(error, exc.status_code)
    response.headers.update(exc.headers or {})
    return response


async def _unexpected_error(_request: Request, _exc: Exception) -> JSONResponse:
    # Starlette re-raises the exception after this response, so the server logs the traceback;
    # the client gets no internals.
    return error_response(
        ClocheError(
            "internal error: the server could not complete the request",
            hint="the server log has the details; report it if it happens again",
        )
    )
