"""Rendering: one Jinja2 environment, full pages or their htmx fragments, and error pages.

A route names a page template and the partial it includes; a normal request gets the page, an
htmx request (``HX-Request``) gets the partial alone, rendered from the same file.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from cloche.auth.roles import ROLE_PERMISSIONS, Permission
from cloche.errors import ClocheError
from cloche.vendor import asset_url

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
SESSION_KEY = "cloche.console.session"
# Pages show what a role may see: no cache may keep them, and the partial/page choice varies.
HEADERS = {"Cache-Control": "no-store", "Vary": "HX-Request"}


def is_htmx(request: Request) -> bool:
    """An htmx request that swaps a fragment (a boosted link wants the whole page)."""
    return request.headers.get("hx-request") == "true" and "hx-boosted" not in request.headers


def utc_time(value: datetime | None) -> Markup:
    """``<time>`` in UTC; console.js shows it in the browser's zone, UTC stays on hover."""
    if value is None:
        return Markup("<span>never</span>")
    moment = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    iso = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    shown = moment.strftime("%Y-%m-%d %H:%M UTC")
    return Markup(f'<time datetime="{iso}" title="{escape(shown)}">{escape(shown)}</time>')


@cache
def static_url(name: str) -> str:
    """The console's own CSS/JS, versioned by content so browsers may cache it for good."""
    digest = hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]
    return f"/console/static/{name}?v={digest}"


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["utc"] = utc_time
    # The roles that may read (the audit log's link): from the one role table, not a copy.
    readers = frozenset(r for r, grants in ROLE_PERMISSIONS.items() if Permission.READ in grants)
    env.globals.update(vendor_url=asset_url, static_url=static_url, readers=readers)
    return env


def html(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """Render ``template`` with what every page needs (the session, its CSRF token)."""
    session = request.scope.get(SESSION_KEY)
    values = {
        "request": request,
        "session": session,
        "csrf_token": session.csrf_token if session is not None else "",
        "path": request.url.path,
        **context,
    }
    body = environment().get_template(template).render(values)
    return HTMLResponse(body, status_code=status, headers={**HEADERS, **(headers or {})})


def page(
    request: Request, template: str, partial: str, context: dict[str, Any], status: int = 200
) -> HTMLResponse:
    """The whole page, or for htmx only ``partial`` (which the page includes)."""
    return html(request, partial if is_htmx(request) else template, context, status=status)


def error_page(request: Request, error: ClocheError) -> HTMLResponse:
    """A service error as a page, or for htmx as a message in the page's alert region."""
    context = {"error": error}
    if is_htmx(request):
        swap = {"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"}
        return html(request, "_error.html", context, status=error.http_status, headers=swap)
    return html(request, "error.html", context, status=error.http_status)
