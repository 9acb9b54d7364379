"""Shared dependencies of the REST handlers, as ``Annotated`` aliases.

A handler declares what it needs (``store: StoreDep``, ``principal: Writer``) and never looks
at headers or app state itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cloche.api.authn import principal_of
from cloche.auth.roles import Permission, Principal, authorize
from cloche.config import Settings
from cloche.errors import InvalidInput
from cloche.store.store import Store

# Declares the bearer scheme in OpenAPI (the docs' Authorize button); authn.BearerAuth checks it.
_bearer = HTTPBearer(
    auto_error=False, description="an API token: `cloche tokens local` or `cloche tokens create`"
)


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_principal(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, as ``authn.BearerAuth`` authenticated them before the body was read."""
    return principal_of(request.scope)


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
