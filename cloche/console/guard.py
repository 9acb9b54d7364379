"""The console's gate, before any route runs: the session, then (for changes) origin and CSRF.

A pure ASGI middleware, so no route can forget it and no body is read for a caller without a
session. A state-changing request must come from this server's own pages: its Origin (or,
without one, its Referer) names this host, and it carries the session's CSRF token, in the
``X-CSRF-Token`` header (htmx, from ``hx-headers`` on <body>) or as the first thing read from a
small urlencoded form (``csrf_token``). Sign-in has no session yet: its forms carry the random
value of a pre-session cookie (double submit).
"""

from __future__ import annotations

import asyncio
import hmac
from urllib.parse import parse_qs, quote, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloche.auth import sessions
from cloche.auth.sessions import ConsoleSession, Lifetimes
from cloche.errors import ClocheError, CsrfRejected, PayloadTooLarge, SessionExpired
from cloche.guards import DEFAULT_PORTS, split_host
from cloche.store.store import Store

from .render import SESSION_KEY, error_page, is_htmx

SESSION_COOKIE = "cloche_console"
PRESESSION_COOKIE = "cloche_console_pre"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_PATHS = frozenset({"/sign-in", "/sign-in/local"})  # checked by the pre-session cookie
MAX_FORM_BYTES = 64 * 1024  # the console's forms are a few fields; uploads send the header
RELOAD_HINT = "reload the page and try again; forms only work from this server's own pages"


class ConsoleGuard:
    """Require a live session (except on sign-in and static files) and, on changes, CSRF."""

    def __init__(self, app: ASGIApp, *, store: Store, lifetimes: Lifetimes) -> None:
        self.app = app
        self.store = store
        self.lifetimes = lifetimes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        path = _route_path(scope)
        unsafe = scope["method"] not in SAFE_METHODS
        try:
            if path.startswith("/static/"):
                expected = None  # nothing there accepts a change
            elif path in OPEN_PATHS:
                expected = request.cookies.get(PRESESSION_COOKIE)
                if unsafe and not expected:
                    raise CsrfRejected(
                        "the sign-in form came without its cookie",
                        hint="reload the sign-in page (the browser must accept cookies)",
                    )
            else:
                session = await self._session(request)
                scope[SESSION_KEY] = session
                expected = session.csrf_token
            if unsafe:
                _check_origin(request)
                receive = await _check_csrf(request, receive, expected)
        except SessionExpired as error:
            await _signed_out(request, error)(scope, receive, send)
            return
        except ClocheError as error:
            await error_page(request, error)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _session(self, request: Request) -> ConsoleSession:
        session_id = request.cookies.get(SESSION_COOKIE)
        if not session_id:
            raise SessionExpired("you are not signed in to the console")
        return await asyncio.to_thread(
            sessions.lookup, self.store, session_id, lifetimes=self.lifetimes
        )


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :] or "/"
    return path


def _signed_out(request: Request, error: SessionExpired) -> Response:
    """To the sign-in page, coming back here afterwards (htmx navigates the whole page)."""
    back = request.url.path if request.method == "GET" else "/console"
    target = f"/console/sign-in?next={quote(back, safe='/')}"
    if is_htmx(request):
        return Response(status_code=401, headers={"HX-Redirect": target})
    if request.method != "GET":
        return error_page(request, error)
    response = RedirectResponse(target, status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/console", samesite="strict")
    return response


def _check_origin(request: Request) -> None:
    """Origin, or else Referer, must name this server: browsers send one on every POST."""
    scheme = request.url.scheme if request.url.scheme in DEFAULT_PORTS else "http"
    own = split_host(request.headers.get("host", ""), DEFAULT_PORTS[scheme])
    sent = request.headers.get("origin") or request.headers.get("referer")
    if sent is None:
        raise CsrfRejected("the request did not say which page sent it", hint=RELOAD_HINT)
    parts = urlsplit(sent)
    port = DEFAULT_PORTS.get(parts.scheme)
    theirs = split_host(parts.netloc, port) if port is not None else None
    if own is None or theirs != own or parts.scheme != scheme:
        origin = f"{parts.scheme}://{parts.netloc}"
        raise CsrfRejected(f"a form sent from {origin} was refused", hint=RELOAD_HINT)


async def _check_csrf(request: Request, receive: Receive, expected: str | None) -> Receive:
    """Compare the CSRF token (header, or the form's field) with ``expected``.

    Returns the ``receive`` the app must use: a form body read here is handed on unchanged.
    """
    if expected is None:
        raise CsrfRejected("this address does not accept changes", hint=RELOAD_HINT)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        "application/x-www-form-urlencoded"
    ):
        body = await _read_body(receive)
        sent = parse_qs(body.decode("latin-1")).get(CSRF_FIELD, [None])[0]
        receive = _replay(body, receive)
    if sent is None or not hmac.compare_digest(expected.encode(), sent.encode()):
        raise CsrfRejected("the form's security token is missing or wrong", hint=RELOAD_HINT)
    return receive


async def _read_body(receive: Receive) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            raise PayloadTooLarge(
                "this form is larger than the console accepts",
                hint="console forms take a few fields; send files with the CLI or API",
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
