"""Console sign-in on a real server: tokens, the local credential, cookies, sign-out, expiry."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from cloche import audit
from cloche.auth import tokens
from cloche.auth.roles import local_actor
from cloche.config import Settings
from cloche.console.app import create_console
from cloche.server import build_app
from cloche.store.store import Store
from cloche.store.tables import ConsoleSessionRow, utcnow

from ._console import Browser, form_token, text_of
from .conftest import LiveServer, ServerFactory, local_admin_token, run_server


@pytest.fixture
def server_on_any_store(any_store: Store) -> Iterator[LiveServer]:
    """`cloche up` on the same database as ``any_store`` (SQLite or PostgreSQL)."""
    url = any_store.db.engine.url
    db_url = url.render_as_string(hide_password=False) if url.drivername != "sqlite" else None
    with run_server(Settings(home=any_store.home, db_url=db_url)) as server:
        yield server


def test_root_redirects_to_the_console(live_server: LiveServer) -> None:
    response = httpx.get(live_server.url + "/", follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"] == "/console/"
    bare = httpx.get(live_server.url + "/console", follow_redirects=False)
    assert bare.status_code == 307 and bare.headers["location"].endswith("/console/")


def test_only_the_vendored_files_are_served_and_cached_for_good(live_server: LiveServer) -> None:
    htmx = httpx.get(live_server.url + "/static/vendor/htmx/htmx.min.js")
    assert htmx.status_code == 200 and "htmx" in htmx.text[:2000]
    assert "immutable" in htmx.headers["cache-control"]
    for other in ("vendored.toml", "__init__.py", "htmx/../__init__.py", "nope.js"):
        assert httpx.get(f"{live_server.url}/static/vendor/{other}").status_code == 404, other


def test_a_token_signs_in_with_a_strict_http_only_session_cookie(
    server_on_any_store: LiveServer, any_store: Store
) -> None:
    viewer = tokens.create_token(any_store, role="viewer", name="ann")
    with Browser(server_on_any_store.url) as browser:
        response = browser.sign_in(viewer.token, next_path="/console/models")
        assert response.status_code == 303 and response.headers["location"] == "/console/models"
        cookie = next(
            c for c in response.headers.get_list("set-cookie") if c.startswith("cloche_console=")
        )
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/console"} <= flags
        assert "secure" not in flags  # plain http on loopback; see the https case below
        page = browser.get("/console/")
        assert page.status_code == 200 and f"token:{viewer.id} viewer" in text_of(page.text)
    with any_store.transaction() as tx:  # the server's session is in the shared store
        assert tx.scalars(select(ConsoleSessionRow.token_id)).all() == [viewer.id]


def test_a_bad_token_shows_the_error_on_the_form_and_starts_no_session(
    live_server: LiveServer,
) -> None:
    with Browser(live_server.url) as browser:
        response = browser.sign_in("cl_000000000000_wrong")
        assert response.status_code == 401 and "invalid or revoked" in response.text
        assert "cl_000000000000_wrong" not in response.text  # the secret is never echoed
        assert browser.get("/console/").status_code == 303


def test_the_local_credential_signs_in_a_browser_on_this_machine(live_server: LiveServer) -> None:
    with Browser(live_server.url) as browser:
        page = browser.get("/console/sign-in")
        assert "Sign in with this machine's local credential" in page.text
        assert "connecting over loopback" in text_of(page.text)  # the page says why
        form = {"csrf_token": form_token(page.text), "next": "/console/"}
        response = browser.post("/console/sign-in/local", form)
        assert response.status_code == 303
        assert "local admin" not in browser.get("/console/").text
        assert " admin" in text_of(browser.get("/console/").text)


def test_a_local_sign_in_is_shown_and_audited_as_the_local_user(
    live_server: LiveServer, store: Store
) -> None:
    with Browser(live_server.url) as browser:
        page = browser.get("/console/sign-in")
        browser.post("/console/sign-in/local", {"csrf_token": form_token(page.text)})
        header = text_of(browser.get("/console/").text)
        assert f"{local_actor()} admin Sign out" in header and "token:" not in header
        form = {"csrf_token": browser.csrf(), "name": "from-local", "description": ""}
        assert browser.post("/console/endpoints", form).status_code == 303
    made = audit.list_audit(store, resource_type="endpoint", resource="from-local", limit=1)
    assert [(e.action, e.actor) for e in made] == [("endpoint.create", local_actor())]
    signed = [e for e in audit.list_audit(store, limit=10) if e.action == "console.sign_in"]
    assert signed[0].actor == local_actor()


def _asgi_call(app: Any, method: str, path: str, *, client: str, **kw: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(client, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as h:
            return await h.request(method, path, **kw)

    return asyncio.run(go())


def test_the_local_credential_is_refused_to_another_machine(settings: Settings) -> None:
    local_admin_token(settings)
    app = build_app(settings)
    page = _asgi_call(app, "GET", "/console/sign-in", client="192.0.2.7")
    assert "local credential" not in page.text
    pre = page.cookies["cloche_console_pre"]
    response = _asgi_call(
        app,
        "POST",
        "/console/sign-in/local",
        client="192.0.2.7",
        data={"csrf_token": pre},
        headers={"Origin": "http://127.0.0.1:8080", "Cookie": f"cloche_console_pre={pre}"},
    )
    assert response.status_code == 403 and "server's own machine" in text_of(response.text)
    assert "cloche_console=" not in response.headers.get("set-cookie", "")


def test_the_local_credential_is_refused_through_a_proxy(live_server: LiveServer) -> None:
    with Browser(live_server.url, headers={"X-Forwarded-For": "198.51.100.4"}) as browser:
        page = browser.get("/console/sign-in")
        assert "local credential" not in page.text
        response = browser.post("/console/sign-in/local", {"csrf_token": form_token(page.text)})
        assert response.status_code == 403


def test_over_https_the_session_cookie_is_secure(settings: Settings) -> None:
    token = local_admin_token(settings)
    store = Store.open(settings)
    app = create_console(settings, store)

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, root_path="/console")
        async with httpx.AsyncClient(transport=transport, base_url="https://127.0.0.1") as h:
            page = await h.get("/console/sign-in")
            form = {"csrf_token": form_token(page.text), "token": token}
            return await h.post(
                "/console/sign-in", data=form, headers={"Origin": "https://127.0.0.1"}
            )

    response = asyncio.run(go())
    store.close()
    cookie = next(c for c in response.headers.get_list("set-cookie") if "cloche_console=" in c)
    assert "secure" in cookie.lower()


def test_sign_out_ends_the_session_and_is_audited(live_server: LiveServer, store: Store) -> None:
    with Browser(live_server.url) as browser:
        browser.sign_in(live_server.token)
        session_cookie = browser.http.cookies["cloche_console"]
        response = browser.post("/console/sign-out", {"csrf_token": browser.csrf()})
        assert response.status_code == 303 and response.headers["location"] == "/console/sign-in"
    with Browser(live_server.url, cookies={"cloche_console": session_cookie}) as replay:
        assert replay.get("/console/").status_code == 303  # the old cookie is worthless now
    actions = [e.action for e in audit.list_audit(store, resource_type="token", limit=5)]
    assert actions[:2] == ["console.sign_out", "console.sign_in"]


def test_an_expired_session_goes_back_to_sign_in_and_returns_afterwards(
    live_server: LiveServer, store: Store
) -> None:
    with Browser(live_server.url) as browser:
        browser.sign_in(live_server.token)
        with store.transaction() as tx:
            row = tx.scalars(select(ConsoleSessionRow)).one()
            row.expires_at = utcnow() - timedelta(seconds=1)
        response = browser.get("/console/models")
        assert response.status_code == 303
        assert response.headers["location"] == "/console/sign-in?next=/console/models"
        assert (
            browser.get("/console/models", htmx=True)
            .headers["HX-Redirect"]
            .startswith("/console/sign-in")
        )


def test_revoking_the_token_ends_its_console_sessions(
    live_server: LiveServer, store: Store
) -> None:
    deployer = tokens.create_token(store, role="deployer")
    with Browser(live_server.url) as browser:
        browser.sign_in(deployer.token)
        assert browser.get("/console/").status_code == 200
        tokens.revoke_token(store, token_id=deployer.id)
        assert browser.get("/console/").status_code == 303


def test_repeated_failed_sign_ins_are_throttled(start_server: ServerFactory) -> None:
    server = start_server(console={"sign_in_attempts": 2})
    with Browser(server.url) as browser:
        assert [browser.sign_in("cl_nope").status_code for _ in range(3)] == [401, 401, 429]
        assert browser.sign_in(server.token).status_code == 429  # even a good one, for a minute
