"""BearerAuth: the control plane's token is decided from the headers, before the body is read."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cloche.api.authn import PRINCIPAL_KEY, BearerAuth
from cloche.auth import tokens
from cloche.store.store import Store

Message = dict[str, Any]


class Downstream:
    """The app behind the middleware: records the scopes it was called with."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def _unread_body() -> Message:
    raise AssertionError("the body was read before the token was accepted")


def _call(store: Store, path: str, authorization: str | None) -> tuple[Downstream, list[Message]]:
    app = Downstream()
    guard = BearerAuth(app, store=store, prefix="/api/v1", open_paths=frozenset({"/api/v1/health"}))
    headers = [] if authorization is None else [(b"authorization", authorization.encode())]
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(guard(scope, _unread_body, send))
    return app, sent


@pytest.mark.parametrize("authorization", [None, "Bearer cl_000000000000_nope", "Basic dTpw"])
def test_a_request_without_a_valid_token_is_refused_without_reading_its_body(
    store: Store, authorization: str | None
) -> None:
    app, sent = _call(store, "/api/v1/models", authorization)
    assert app.scopes == []
    assert sent[0]["status"] == 401
    assert (b"www-authenticate", b"Bearer") in sent[0]["headers"]
    assert b"unauthorized" in sent[1]["body"]


def test_the_missing_token_hint_names_cloche_tokens_local(store: Store) -> None:
    _, sent = _call(store, "/api/v1/tokens", None)
    assert b"cloche tokens local" in sent[1]["body"]


def test_a_valid_token_puts_its_principal_in_the_scope(store: Store) -> None:
    new = tokens.create_token(store, role="viewer")
    app, sent = _call(store, "/api/v1/models", f"Bearer {new.token}")
    [scope] = app.scopes
    assert scope[PRINCIPAL_KEY].role == "viewer" and sent[0]["status"] == 204


@pytest.mark.parametrize("path", ["/api/v1/health", "/api/docs", "/api/openapi.json"])
def test_health_and_docs_need_no_token(store: Store, path: str) -> None:
    app, sent = _call(store, path, None)
    assert len(app.scopes) == 1 and sent[0]["status"] == 204
