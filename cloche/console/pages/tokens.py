"""Tokens (admins only): the list, creating one (its secret shown once, on that response only)
and revoking one."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from cloche.auth import tokens
from cloche.auth.roles import ROLES, Permission, Principal, authorize
from cloche.auth.tokens import NewToken
from cloche.errors import ClocheError

from ..paging import fetch_page, parse_listing
from ..render import SESSION_KEY, html, is_htmx, page

SORTS = ("-created", "created", "name", "-name", "role", "-role")
SORT_KEYS = {"created": "created", "name": "name", "role": "role"}


def _admin(request: Request) -> Principal:
    principal: Principal = request.scope[SESSION_KEY].principal
    authorize(principal, Permission.ADMIN)
    return principal


async def _context(request: Request, **extra: Any) -> dict[str, Any]:
    listing = parse_listing(request.query_params, sorts=SORTS, default="-created")
    store = request.app.state.store
    rows = await asyncio.to_thread(
        fetch_page, listing, lambda asked: tokens.page_tokens(store, asked), sorts=SORT_KEYS
    )
    form = {"name": "", "role": "viewer"}
    return {"page": rows, "sorts": SORTS, "roles": ROLES, "form": form, **extra}


async def list_tokens(request: Request) -> Response:
    _admin(request)
    return page(request, "tokens.html", "_tokens_table.html", await _context(request))


async def create_token(request: Request) -> Response:
    """Create a token; its secret is in this response and nowhere else."""
    principal = _admin(request)  # before the body: a non-admin's form is never read
    form = await request.form()
    fields = {"name": str(form.get("name", "")).strip(), "role": str(form.get("role", ""))}
    try:
        made: NewToken = await asyncio.to_thread(
            tokens.create_token,
            request.app.state.store,
            role=fields["role"],
            name=fields["name"],
            actor=principal.actor,
        )
    except ClocheError as error:
        context = await _context(request, form=fields, form_error=error)
        swap = {"HX-Retarget": "#token-form", "HX-Reswap": "outerHTML"}
        if is_htmx(request):
            return html(
                request, "_token_form.html", context, status=error.http_status, headers=swap
            )
        return html(request, "tokens.html", context, status=error.http_status)
    context = await _context(request, created=made)
    # Not a redirect: the secret is only in this page, which no cache keeps (no-store).
    return html(request, "tokens.html", context, status=201)


async def revoke_token(request: Request) -> Response:
    principal = _admin(request)
    token_id = request.path_params["token_id"]
    try:
        await asyncio.to_thread(
            tokens.revoke_token, request.app.state.store, token_id=token_id, actor=principal.actor
        )
    except ClocheError as error:
        context = await _context(request, revoke_error=error, revoke_id=token_id)
        return page(request, "tokens.html", "_tokens_table.html", context, status=error.http_status)
    if not is_htmx(request):
        return RedirectResponse("/console/tokens", status_code=303)
    context = await _context(request, notice=f"token {token_id} revoked")
    return html(request, "_tokens_table.html", context)


ROUTES = [
    Route("/tokens", list_tokens, methods=["GET"]),
    Route("/tokens", create_token, methods=["POST"]),
    Route("/tokens/{token_id}/revoke", revoke_token, methods=["POST"]),
]
