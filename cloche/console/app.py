"""The console as an ASGI app, and the one call that puts it beside the API in the server."""

from __future__ import annotations

import re
from datetime import timedelta

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloche.auth.sessions import Lifetimes
from cloche.config import Settings
from cloche.errors import ClocheError, NotFound
from cloche.guards import MULTIPART_OVERHEAD, BodyCap, BodySizeLimit
from cloche.store.store import Store

from .guard import ConsoleGuard
from .pages import (
    alerts,
    audit,
    batch,
    batch_schedules,
    deployments,
    endpoints,
    lineage,
    models,
    monitor_features,
    monitor_forms,
    monitors,
    overview,
    pipelines,
    runs,
    signin,
    tokens,
    uploads,
)
from .pages.signin import Throttle
from .render import STATIC_DIR, error_page

PREFIX = "/console"
# Only this server's own files, no inline script or style: an injected tag runs nothing.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def create_console(settings: Settings, store: Store) -> Starlette:
    """The console's pages over ``store``, every route behind ``ConsoleGuard``."""
    lifetimes = Lifetimes(
        idle=timedelta(minutes=settings.console.idle_minutes),
        lifetime=timedelta(hours=settings.console.lifetime_hours),
    )
    app = Starlette(
        routes=[
            *signin.ROUTES,
            *overview.ROUTES,
            *models.ROUTES,
            *uploads.ROUTES,
            *endpoints.ROUTES,
            *deployments.ROUTES,
            *monitor_features.ROUTES,
            *monitor_forms.ROUTES,  # before monitors': /monitors/{name}/delete is not an action
            *monitors.ROUTES,
            *alerts.ROUTES,
            *batch_schedules.ROUTES,  # before /batch/{job_id}
            *batch.ROUTES,
            *tokens.ROUTES,
            *audit.ROUTES,
            *pipelines.ROUTES,
            *runs.ROUTES,
            *lineage.ROUTES,
            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
        ],
        middleware=[Middleware(ConsoleGuard, store=store, lifetimes=lifetimes)],
        exception_handlers={ClocheError: _cloche_error, 404: _not_found},
    )
    app.state.settings = settings
    app.state.store = store
    app.state.lifetimes = lifetimes
    app.state.throttle = Throttle(settings.console.sign_in_attempts)
    app.add_middleware(_SecurityHeaders)
    return app


async def _cloche_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, ClocheError):  # registered for ClocheError only
        raise exc
    return error_page(request, exc)


async def _not_found(request: Request, _exc: Exception) -> Response:
    return error_page(request, NotFound("the console has no such page", hint="open /console"))


class _SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                extra = [
                    (k.lower().encode(), v.encode())
                    for k, v in SECURITY_HEADERS.items()
                    if k.lower().encode() not in have
                ]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


async def _to_console(_request: Request) -> Response:
    return RedirectResponse(f"{PREFIX}/", status_code=307)


def with_console(api: ASGIApp, settings: Settings, store: Store) -> ASGIApp:
    """``api`` with the console beside it: /console, and ``/`` redirects there.

    Vendored assets (/static/vendor) are the API's to serve: the API docs page uses them too.

    The console has its own body caps: small forms, and the upload cap on the upload route.
    """
    console = BodySizeLimit(
        Starlette(
            routes=[
                Route("/", _to_console, methods=["GET"]),
                Mount(PREFIX, create_console(settings, store)),
            ]
        ),
        cap=BodyCap(settings.max_json_bytes, "CLOCHE_SERVER__MAX_JSON_KB"),
        upload_cap=BodyCap(
            settings.max_upload_bytes + MULTIPART_OVERHEAD, "CLOCHE_STORE__MAX_UPLOAD_MB"
        ),
        upload_routes=[("POST", re.compile(f"^{PREFIX}{uploads.UPLOAD_PATH}$"))],
    )

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path in ("/", PREFIX) or path.startswith(f"{PREFIX}/"):
            await console(scope, receive, send)
        else:
            await api(scope, receive, send)

    return app
