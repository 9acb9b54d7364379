"""Shared dependencies of the REST handlers, as ``Annotated`` aliases.

A handler declares what it needs (``store: StoreDep``, ``principal: Writer``) and never looks
at headers or app state itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cloche.auth import tokens
from cloche.auth.roles import LOCAL_USER, Permission, Principal, authorize
from cloche.config import Settings
from cloche.errors import InvalidInput, Unauthorized
from cloche.store.store import Store

_bearer = HTTPBearer(
    auto_error=False, description="an API token: `cloche tokens create --role ROLE`"
)
TOKEN_HINT = "send 'Authorization: Bearer <token>'; create a token with `cloche tokens create`"


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def get_principal(
    request: Request, store: StoreDep, settings: SettingsDep, credentials: Credentials
) -> Principal:
    """The caller: a token's principal, or the local user of a loopback server without auth."""
    if credentials is not None:
        return tokens.authenticate(store, credentials.credentials)
    if "authorization" in request.headers:
        # A malformed or non-Bearer header is a mistake to report, not a reason to fall back
        # to the local user.
        raise Unauthorized("the Authorization header is not 'Bearer <token>'", hint=TOKEN_HINT)
    if settings.auth_required:
        raise Unauthorized("this server requires an API token", hint=TOKEN_HINT)
    return LOCAL_USER


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(permission: Permission) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that yields the caller if their role grants ``permission`` (else 403)."""

    async def check(principal: PrincipalDep) -> Principal:
        authorize(principal, permission)
        return principal

    return check


Reader = Annotated[Principal, Depends(require(Permission.READ))]
Writer = Annotated[Principal, Depends(require(Permission.WRITE))]
Admin = Annotated[Principal, Depends(require(Permission.ADMIN))]


def label_filter(
    label: Annotated[
        list[str] | None, Query(description="keep models with a version labelled k=v (repeatable)")
    ] = None,
) -> dict[str, str]:
    """``?label=team=risk&label=stage=prod`` as a dict."""
    labels = {}
    for item in label or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"label filter {item!r} is not key=value", hint="e.g. team=risk")
        labels[key] = value
    return labels


LabelFilter = Annotated[dict[str, str], Depends(label_filter)]
