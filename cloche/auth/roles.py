"""Roles and what each may do. One table; every check goes through ``authorize``."""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from enum import StrEnum

from cloche.errors import Forbidden, InvalidInput


class Permission(StrEnum):
    READ = "read"  # list and show models, endpoints, jobs, audit
    WRITE = "write"  # upload models in formats that load without running code; alias, delete
    PUBLISH = "publish"  # upload formats whose loading runs code: pickle, joblib, torch, custom
    DEPLOY = "deploy"  # change what endpoints serve, run jobs
    PREDICT = "predict"  # call the data plane
    EDGE_UPLOAD = "edge_upload"  # send an edge server's payload log to its central endpoint
    ADMIN = "admin"  # manage tokens


ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "admin": frozenset(Permission),
    "publisher": frozenset(
        {
            Permission.READ,
            Permission.WRITE,
            Permission.PUBLISH,
            Permission.DEPLOY,
            Permission.PREDICT,
        }
    ),
    "deployer": frozenset(
        {Permission.READ, Permission.WRITE, Permission.DEPLOY, Permission.PREDICT}
    ),
    "edge": frozenset({Permission.EDGE_UPLOAD}),
    "predictor": frozenset({Permission.PREDICT}),
    "viewer": frozenset({Permission.READ}),
}
ROLES = tuple(ROLE_PERMISSIONS)


@dataclass(frozen=True)
class Principal:
    """Who is acting: a token's id and role, or the local user of a loopback server."""

    actor: str
    role: str
    token_id: str | None = None


LOCAL_USER = Principal(actor="local", role="admin")


def local_actor() -> str:
    """Who acts on this machine's CLOCHE_HOME directly (CLI, in-process SDK, local runs)."""
    try:
        return f"local:{getpass.getuser()}"
    except (KeyError, OSError):
        return "local"


def check_role(role: str) -> str:
    if role not in ROLE_PERMISSIONS:
        raise InvalidInput(f"unknown role {role!r}", hint=f"use one of: {', '.join(ROLES)}")
    return role


def allows(principal: Principal, permission: Permission) -> bool:
    """Whether the principal's role grants ``permission``."""
    return permission in ROLE_PERMISSIONS.get(principal.role, frozenset())


def authorize(principal: Principal, permission: Permission) -> None:
    """Raise Forbidden unless the principal's role grants ``permission``."""
    if not allows(principal, permission):
        allowed = [r for r, perms in ROLE_PERMISSIONS.items() if permission in perms]
        raise Forbidden(
            f"role {principal.role!r} may not {permission.value}",
            hint=f"use a token with one of the roles: {', '.join(allowed)}",
        )
