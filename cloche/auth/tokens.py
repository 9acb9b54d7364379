"""API tokens: created once and shown once, stored only as a hash, checked in constant time.

A token reads ``cl_<id>_<secret>``. The id finds the row; the sha256 of the whole token is
compared with ``hmac.compare_digest``. The secret is 256 random bits, so a plain sha256 is as
strong as a slow password hash here and keeps every request cheap.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import select

from cloche import audit
from cloche.auth.roles import Principal, check_role
from cloche.errors import InvalidInput, TokenNotFound, Unauthorized
from cloche.store import paging
from cloche.store.paging import Page, PageRequest
from cloche.store.store import Store
from cloche.store.tables import TokenRow, utcnow

PREFIX = "cl_"


class TokenInfo(BaseModel):
    id: str
    name: str
    role: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None


class NewToken(TokenInfo):
    token: str  # shown once, never stored


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _info(row: TokenRow) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        name=row.name,
        role=row.role,
        created_at=audit.as_utc(row.created_at),
        created_by=row.created_by,
        revoked_at=audit.as_utc(row.revoked_at) if row.revoked_at else None,
    )


def create_token(store: Store, *, role: str, name: str = "", actor: str = "local") -> NewToken:
    """A new token with ``role``; the returned ``token`` is the only copy of the secret."""
    check_role(role)
    if len(name) > 128:
        raise InvalidInput("token name is longer than 128 characters")
    token_id = secrets.token_hex(6)
    token = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    with store.transaction() as session:
        row = TokenRow(
            id=token_id, name=name, role=role, secret_hash=_hash(token), created_by=actor
        )
        session.add(row)
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="token.create",
            resource_type="token",
            resource=token_id,
            after={"role": role, "name": name},
        )
        return NewToken(**_info(row).model_dump(), token=token)


def list_tokens(store: Store) -> list[TokenInfo]:
    """Every token, oldest first: every page of ``page_tokens``."""
    return paging.collect(lambda page: page_tokens(store, page))


TOKENS = paging.Listing(
    name="tokens",
    sorts={"created": TokenRow.created_at, "name": TokenRow.name, "role": TokenRow.role},
    default="created",
    default_order="asc",
    tiebreak=TokenRow.id,
)


def page_tokens(store: Store, request: PageRequest) -> Page[TokenInfo]:
    """Tokens (never their secrets), oldest first by default; ``q`` searches name and id."""
    query = paging.search(select(TokenRow), request, TokenRow.name, TokenRow.id)
    with store.transaction() as session:
        return paging.fetch(
            session, query, request, TOKENS, lambda rows: [_info(r[0]) for r in rows]
        )


def revoke_token(store: Store, *, token_id: str, actor: str = "local") -> TokenInfo:
    """Revoke a token by id; it stops working at once."""
    with store.transaction() as session:
        row = session.get(TokenRow, token_id)
        if row is None:
            raise TokenNotFound(
                f"no token with id {token_id!r}", hint="list tokens with `cloche tokens list`"
            )
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            audit.record(
                session,
                actor=actor,
                action="token.revoke",
                resource_type="token",
                resource=token_id,
                before={"role": row.role},
            )
        return _info(row)


def authenticate(store: Store, token: str) -> Principal:
    """The principal a bearer token stands for; Unauthorized for anything else."""
    token_id = _token_id(token)
    with store.transaction() as session:
        row = session.get(TokenRow, token_id) if token_id else None
        # Compare even when no row matched, so timing does not reveal which ids exist.
        expected = row.secret_hash if row is not None else _hash("")
        valid = hmac.compare_digest(expected, _hash(token))
        if row is None or not valid or row.revoked_at is not None:
            raise Unauthorized(
                "the API token is invalid or revoked",
                hint="create one with `cloche tokens create --role ROLE` on the server",
            )
        return Principal(actor=f"token:{row.id}", role=row.role, token_id=row.id)


def _token_id(token: str) -> str | None:
    if not token.startswith(PREFIX):
        return None
    token_id, sep, _ = token[len(PREFIX) :].partition("_")
    return token_id if sep and len(token_id) == 12 else None
