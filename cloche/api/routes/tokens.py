"""API tokens: create, list, revoke. Every route needs the admin permission."""

from __future__ import annotations

from fastapi import Request, Response

from cloche.api.deps import Admin, StoreDep
from cloche.api.paging import PageParams, items
from cloche.api.routes import make_router
from cloche.api.schemas import TokenRequest
from cloche.auth import tokens
from cloche.auth.tokens import NewToken, TokenInfo

router = make_router("/tokens", "tokens")


@router.post("", status_code=201)
def create_token(
    principal: Admin, store: StoreDep, body: TokenRequest, response: Response
) -> NewToken:
    """Create an API token; its secret is in this response only."""
    response.headers["Cache-Control"] = "no-store"
    return tokens.create_token(store, role=body.role, name=body.name, actor=principal.actor)


@router.get("")
def list_tokens(
    _: Admin, store: StoreDep, page: PageParams, request: Request, response: Response
) -> list[TokenInfo]:
    """List tokens (never their secrets). Sort keys: created (default), name, role."""
    return items(tokens.page_tokens(store, page), request, response)


@router.delete("/{token_id}")
def revoke_token(principal: Admin, store: StoreDep, token_id: str) -> TokenInfo:
    """Revoke a token; it stops working at once."""
    return tokens.revoke_token(store, token_id=token_id, actor=principal.actor)
