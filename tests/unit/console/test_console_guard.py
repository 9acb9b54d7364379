"""ConsoleGuard: no session, no route and no body read; a change needs same origin and CSRF."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest

from cloche.auth import sessions, tokens
from cloche.auth.sessions import Lifetimes
from cloche.console.guard import PRESESSION_COOKIE, SESSION_COOKIE, ConsoleGuard
from cloche.console.render import SESSION_KEY
from cloche.store.store import Store

LIFETIMES = Lifetimes(idle=timedelta(hours=1), lifetime=timedelta(hours=8))
BASE = "http://127.0.0.1:8080"
SAME_ORIGIN = {"Origin": BASE}


class Recorder:
    """The app behind the guard: records whether it ran and the body it read."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.calls.append((scope[SESSION_KEY].principal.role if SESSION_KEY in scope else "", body))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def _call(store: Store, method: str, path: str, **kw: Any) -> tuple[httpx.Response, Recorder]:
    recorder = Recorder()
    app = ConsoleGuard(recorder, store=store, lifetimes=LIFETIMES)  # type: ignore[arg-type]

    async def go() -> httpx.Response:
        # Mounted at /console, as in the server: the guard reads paths below its mount.
        transport = httpx.ASGITransport(app=app, root_path="/console")  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
            return await http.request(method, path, **kw)

    return asyncio.run(go()), recorder


@pytest.fixture
def signed_in(store: Store) -> sessions.NewSession:
    token = tokens.create_token(store, role="deployer")
    return sessions.sign_in(store, token.token, lifetimes=LIFETIMES)


def _cookies(new: sessions.NewSession) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={new.session_id}"}


def test_without_a_session_a_page_redirects_to_sign_in(store: Store) -> None:
    response, app = _call(store, "GET", "/console/models")
    assert response.status_code == 303 and app.calls == []
    assert response.headers["location"] == "/console/sign-in?next=/console/models"


def test_without_a_session_a_post_is_refused_before_its_body_is_read(store: Store) -> None:
    response, app = _call(
        store, "POST", "/console/models/x/aliases", data={"alias": "prod"}, headers=SAME_ORIGIN
    )
    assert response.status_code == 401 and app.calls == []
    assert "not signed in" in response.text


def test_a_page_view_with_a_session_reaches_the_route(
    store: Store, signed_in: sessions.NewSession
) -> None:
    response, app = _call(store, "GET", "/console/models", headers=_cookies(signed_in))
    assert response.status_code == 200 and app.calls == [("deployer", b"")]


def test_the_csrf_header_lets_a_change_through(
    store: Store, signed_in: sessions.NewSession
) -> None:
    headers = {**_cookies(signed_in), **SAME_ORIGIN, "X-CSRF-Token": signed_in.csrf_token}
    response, app = _call(store, "POST", "/console/x", headers=headers, data={"a": "1"})
    assert response.status_code == 200 and app.calls == [("deployer", b"a=1")]


def test_the_csrf_form_field_lets_a_change_through_with_its_body_intact(
    store: Store, signed_in: sessions.NewSession
) -> None:
    form = {"csrf_token": signed_in.csrf_token, "alias": "prod"}
    headers = {**_cookies(signed_in), **SAME_ORIGIN}
    response, app = _call(store, "POST", "/console/x", headers=headers, data=form)
    assert response.status_code == 200
    assert app.calls == [("deployer", f"csrf_token={signed_in.csrf_token}&alias=prod".encode())]


@pytest.mark.parametrize(
    ("form", "extra"),
    [
        ({"alias": "prod"}, {}),  # no token
        ({"csrf_token": "wrong", "alias": "prod"}, {}),
        ({"alias": "prod"}, {"X-CSRF-Token": "wrong"}),
        ({"alias": "prod"}, {"X-CSRF-Token": ""}),
    ],
    ids=["missing", "wrong-field", "wrong-header", "empty-header"],
)
def test_a_change_without_the_right_csrf_token_is_forbidden(
    store: Store, signed_in: sessions.NewSession, form: dict[str, str], extra: dict[str, str]
) -> None:
    headers = {**_cookies(signed_in), **SAME_ORIGIN, **extra}
    response, app = _call(store, "POST", "/console/x", headers=headers, data=form)
    assert response.status_code == 403 and app.calls == []
    assert "security token is missing or wrong" in response.text


@pytest.mark.parametrize(
    "origin",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "http://127.0.0.1:9999"},
        {"Referer": "https://127.0.0.1:8080/console"},
        {},
    ],
    ids=["other-site", "other-port", "other-scheme-referer", "none"],
)
def test_a_change_from_another_origin_or_none_is_forbidden(
    store: Store, signed_in: sessions.NewSession, origin: dict[str, str]
) -> None:
    headers = {**_cookies(signed_in), **origin, "X-CSRF-Token": signed_in.csrf_token}
    response, app = _call(store, "POST", "/console/x", headers=headers)
    assert response.status_code == 403 and app.calls == []


def test_a_same_origin_referer_stands_in_for_a_missing_origin(
    store: Store, signed_in: sessions.NewSession
) -> None:
    headers = {
        **_cookies(signed_in),
        "Referer": f"{BASE}/console/models",
        "X-CSRF-Token": signed_in.csrf_token,
    }
    response, app = _call(store, "POST", "/console/x", headers=headers)
    assert response.status_code == 200 and len(app.calls) == 1


def test_sign_in_needs_the_pre_session_cookie_echoed_in_the_form(store: Store) -> None:
    cookie = {"Cookie": f"{PRESESSION_COOKIE}=abc123", **SAME_ORIGIN}
    path = "/console/sign-in"
    good, app = _call(store, "POST", path, headers=cookie, data={"csrf_token": "abc123"})
    assert good.status_code == 200 and len(app.calls) == 1
    bad, app = _call(store, "POST", path, headers=cookie, data={"csrf_token": "x"})
    assert bad.status_code == 403 and app.calls == []
    none, app = _call(store, "POST", path, headers=SAME_ORIGIN, data={"csrf_token": ""})
    assert none.status_code == 403 and app.calls == [] and "without its cookie" in none.text


def test_an_oversized_form_is_refused_before_the_route(
    store: Store, signed_in: sessions.NewSession
) -> None:
    headers = {**_cookies(signed_in), **SAME_ORIGIN}
    response, app = _call(store, "POST", "/console/x", headers=headers, data={"a": "x" * 70_000})
    assert response.status_code == 413 and app.calls == []
