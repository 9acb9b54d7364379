"""Sign in (an API token, or this machine's local credential) and sign out."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import defaultdict, deque
from dataclasses import replace

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from cloche.auth import sessions, tokens
from cloche.auth.local_token import read_local_token, require_local_token
from cloche.auth.roles import local_actor
from cloche.auth.sessions import Lifetimes, NewSession
from cloche.errors import ClocheError, Forbidden, SignInThrottled, Unauthorized
from cloche.guards import split_host
from cloche.hosts import LOOPBACK_HOSTS, is_loopback
from cloche.store.store import Store

from ..guard import PRESESSION_COOKIE, SESSION_COOKIE
from ..render import html

FORWARDED = ("x-forwarded-for", "x-forwarded-host", "forwarded", "x-real-ip")
COOKIE_PATH = "/console"


class Throttle:
    """Failed sign-ins per client address in the last minute (per worker: a brake, not a wall)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._failures: defaultdict[str, deque[float]] = defaultdict(deque)

    def check(self, client: str) -> None:
        recent = self._recent(client)
        if len(recent) >= self.per_minute:
            raise SignInThrottled(
                "too many failed sign-ins from this address",
                hint="wait a minute, then sign in with a valid token",
            )

    def failed(self, client: str) -> None:
        self._recent(client).append(time.monotonic())

    def _recent(self, client: str) -> deque[float]:
        if len(self._failures) > 10_000:  # a flood of addresses must not grow memory forever
            self._failures.clear()
        recent = self._failures[client]
        while recent and recent[0] < time.monotonic() - 60:
            recent.popleft()
        return recent


def local_sign_in_allowed(request: Request) -> bool:
    """A browser on this machine, talking to it directly: loopback peer and Host, no proxy."""
    client = request.client.host if request.client else ""
    host = split_host(request.headers.get("host", ""), 80)
    return (
        is_loopback(client)
        and host is not None
        and host[0] in LOOPBACK_HOSTS
        and not any(name in request.headers for name in FORWARDED)
    )


def _next_path(value: str | None) -> str:
    """Only a console page: never another site (``//evil``) after signing in."""
    if value and value.startswith("/console") and "//" not in value and "\\" not in value:
        return value
    return "/console"


def _form(request: Request, *, error: ClocheError | None = None, status: int = 200) -> Response:
    store: Store = request.app.state.store
    pre = request.cookies.get(PRESESSION_COOKIE) or secrets.token_urlsafe(32)
    local = local_sign_in_allowed(request) and read_local_token(store.home) is not None
    context = {
        "pre_token": pre,
        "offer_local": local,
        "next": _next_path(request.query_params.get("next")),
        "error": error,
    }
    response = html(request, "sign_in.html", context, status=status)
    response.set_cookie(
        PRESESSION_COOKIE, pre, path=COOKIE_PATH, httponly=True, samesite="strict",
        secure=_secure(request),
    )  # fmt: skip
    return response


def _secure(request: Request) -> bool:
    # uvicorn sets the scheme to https behind a proxy it trusts (forwarded_allow_ips) too.
    return bool(request.app.state.settings.server.tls) or request.url.scheme == "https"


def _signed_in(request: Request, new: NewSession, next_path: str) -> Response:
    response = RedirectResponse(_next_path(next_path), status_code=303)
    max_age = int((new.expires_at - new.created_at).total_seconds())
    response.set_cookie(
        SESSION_COOKIE, new.session_id, max_age=max_age, path=COOKIE_PATH, httponly=True,
        samesite="strict", secure=_secure(request),
    )  # fmt: skip
    response.delete_cookie(PRESESSION_COOKIE, path=COOKIE_PATH, samesite="strict")
    return response


async def sign_in_page(request: Request) -> Response:
    return _form(request)


async def sign_in(request: Request) -> Response:
    """Exchange the token typed into the form for a session."""
    state = request.app.state
    client = request.client.host if request.client else "?"
    form = await request.form()
    try:
        state.throttle.check(client)
        token = str(form.get("token", "")).strip()
        if not token:
            raise Unauthorized("enter an API token", hint="`cloche tokens create` makes one")
        new = await asyncio.to_thread(sessions.sign_in, state.store, token, lifetimes=_lt(request))
    except Unauthorized as error:
        state.throttle.failed(client)
        return _form(request, error=error, status=error.http_status)
    except ClocheError as error:
        return _form(request, error=error, status=error.http_status)
    return _signed_in(request, new, str(form.get("next", "")))


async def sign_in_local(request: Request) -> Response:
    """Sign in with ``$CLOCHE_HOME/local-token``, read here: only for a browser on this machine."""
    state = request.app.state
    form = await request.form()
    try:
        if not local_sign_in_allowed(request):
            raise Forbidden(
                "the local credential signs in only a browser on the server's own machine",
                hint="sign in with an API token (`cloche tokens create --role viewer`)",
            )
        token = require_local_token(state.store.home)
        new = await asyncio.to_thread(_local_session, state.store, token, _lt(request))
    except ClocheError as error:
        return _form(request, error=error, status=error.http_status)
    return _signed_in(request, new, str(form.get("next", "")))


def _local_session(store: Store, token: str, lifetimes: Lifetimes) -> NewSession:
    """A session of the local admin token, acting as this machine's user (``local:NAME``, as
    the CLI acts here), not as ``token:<id>``: the header and the audit log name a person.
    The token still backs it: revoking the local token ends the session."""
    principal = replace(tokens.authenticate(store, token), actor=local_actor())
    return sessions.start_session(store, principal, lifetimes=lifetimes, how="local")


async def sign_out(request: Request) -> Response:
    session_id = request.cookies.get(SESSION_COOKIE, "")
    await asyncio.to_thread(sessions.sign_out, request.app.state.store, session_id)
    response = RedirectResponse("/console/sign-in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, samesite="strict")
    return response


def _lt(request: Request) -> Lifetimes:
    lifetimes: Lifetimes = request.app.state.lifetimes
    return lifetimes


ROUTES = [
    Route("/sign-in", sign_in_page, methods=["GET"]),
    Route("/sign-in", sign_in, methods=["POST"]),
    Route("/sign-in/local", sign_in_local, methods=["POST"]),
    Route("/sign-out", sign_out, methods=["POST"]),
]
