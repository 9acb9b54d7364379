"""Console tokens and audit pages on a real server: admins only, the secret shown once,
revoking, and the audit log's filters and pages."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from cloche import audit
from cloche.auth import tokens
from cloche.console.paging import PER_PAGE
from cloche.errors import Unauthorized
from cloche.store.store import Store

from ._console import Browser, signed_in, signed_in_as, text_of
from .conftest import LiveServer

SECRET = re.compile(r'id="token-secret"[^>]*value="(cl_[^"]+)"')


@pytest.fixture
def admin(live_server: LiveServer) -> Any:
    with signed_in(live_server.url, live_server.token) as browser:
        yield browser


@pytest.fixture(params=["viewer", "deployer"])
def other(request: pytest.FixtureRequest, live_server: LiveServer, store: Store) -> Any:
    with signed_in_as(store, live_server.url, request.param, "not-admin") as browser:
        yield browser


def create(admin: Browser, name: str, role: str = "viewer") -> httpx.Response:
    form = {"csrf_token": admin.csrf("/console/tokens"), "name": name, "role": role}
    return admin.post("/console/tokens", form)


def test_a_new_tokens_secret_is_shown_once_and_works(
    admin: Browser, live_server: LiveServer, store: Store
) -> None:
    response = create(admin, "ci", "deployer")
    assert response.status_code == 201 and response.headers["Cache-Control"] == "no-store"
    found = SECRET.search(response.text)
    assert found is not None
    secret = found.group(1)
    assert tokens.authenticate(store, secret).role == "deployer"
    made = next(t for t in tokens.list_tokens(store) if t.name == "ci")
    assert f"{made.id} ci deployer" in text_of(response.text)
    again = admin.get("/console/tokens")
    assert secret not in again.text and 'id="token-secret"' not in again.text
    assert f"{made.id} ci deployer" in text_of(again.text)


@pytest.mark.parametrize(
    ("name", "role", "says", "status"),
    [
        ("x", "overlord", "unknown role 'overlord'", 422),
        ("n" * 129, "viewer", "longer than 128 characters", 422),
    ],
)
def test_a_refused_token_shows_the_message_beside_the_form(
    admin: Browser, store: Store, name: str, role: str, says: str, status: int
) -> None:
    before = len(tokens.list_tokens(store))
    response = create(admin, name, role)
    assert response.status_code == status
    assert 'id="token-error"' in response.text and says in text_of(response.text)
    assert 'id="token-secret"' not in response.text
    assert len(tokens.list_tokens(store)) == before


def test_revoking_a_token_stops_it_and_is_audited(admin: Browser, store: Store) -> None:
    made = tokens.create_token(store, role="viewer", name="old")
    form = {"csrf_token": admin.csrf("/console/tokens")}
    response = admin.post(f"/console/tokens/{made.id}/revoke", form, htmx=True)
    assert response.status_code == 200 and "<html" not in response.text
    assert f"token {made.id} revoked" in text_of(response.text)
    assert f"{made.id} old viewer" in text_of(response.text) and "revoked" in response.text
    with pytest.raises(Unauthorized):
        tokens.authenticate(store, made.token)
    entry = audit.list_audit(store, resource_type="token", limit=1)[0]
    assert (entry.action, entry.resource) == ("token.revoke", made.id)
    assert entry.actor.startswith("token:")
    missing = admin.post("/console/tokens/nothere/revoke", form, htmx=True)
    assert missing.status_code == 404 and "no token with id 'nothere'" in text_of(missing.text)


def test_a_forged_revoke_without_csrf_changes_nothing(admin: Browser, store: Store) -> None:
    made = tokens.create_token(store, role="viewer")
    assert admin.post(f"/console/tokens/{made.id}/revoke", {}).status_code == 403
    assert tokens.authenticate(store, made.token).role == "viewer"


def test_others_see_no_tokens_link_and_get_the_apis_403(
    other: Any, live_server: LiveServer, store: Store
) -> None:
    home = other.get("/console/")
    assert 'href="/console/tokens"' not in home.text
    api = httpx.get(
        f"{live_server.url}/api/v1/tokens",
        headers={"Authorization": f"Bearer {other.token}"},
    )
    response = other.get("/console/tokens")
    assert response.status_code == api.status_code == 403
    assert api.json()["error"]["message"] in text_of(response.text)
    before = len(tokens.list_tokens(store))
    form = {"csrf_token": other.csrf(), "name": "mine", "role": "admin"}
    assert other.post("/console/tokens", form).status_code == 403
    assert len(tokens.list_tokens(store)) == before


def test_any_reader_reads_the_audit_log_as_the_api_lets_it(
    other: Any, live_server: LiveServer, store: Store
) -> None:
    tokens.create_token(store, role="viewer", name="seen", actor="alice")
    assert 'href="/console/audit"' in other.get("/console/").text
    api = httpx.get(
        f"{live_server.url}/api/v1/audit",
        headers={"Authorization": f"Bearer {other.token}"},
    )
    page = other.get("/console/audit")
    assert page.status_code == api.status_code == 200
    assert "alice token.create token" in text_of(page.text)
    assert len(api.json()) >= 1


def test_a_token_without_read_gets_no_audit_link_and_the_apis_403(
    live_server: LiveServer, store: Store
) -> None:
    with signed_in_as(store, live_server.url, "predictor") as predictor:
        assert 'href="/console/audit"' not in predictor.get("/console/tokens").text
        api = httpx.get(
            f"{live_server.url}/api/v1/audit",
            headers={"Authorization": f"Bearer {predictor.token}"},
        )
        response = predictor.get("/console/audit")
        assert response.status_code == api.status_code == 403
        assert api.json()["error"]["message"] in text_of(response.text)


def test_an_admin_sees_both_links(admin: Browser) -> None:
    home = admin.get("/console/").text
    assert 'href="/console/tokens"' in home and 'href="/console/audit"' in home


def test_the_audit_log_is_newest_first_and_filters(admin: Browser, store: Store) -> None:
    first = tokens.create_token(store, role="viewer", name="a", actor="alice")
    second = tokens.create_token(store, role="admin", name="b", actor="bob")
    tokens.revoke_token(store, token_id=first.id, actor="bob")
    page = text_of(admin.get("/console/audit").text)
    revoke = f"bob token.revoke token {first.id}"
    assert page.index(revoke) < page.index(f"bob token.create token {second.id}")
    assert page.index(f"alice token.create token {first.id}") > page.index(revoke)
    assert '{"role": "viewer"}' in page  # the revoke's before
    by_bob = text_of(admin.get("/console/audit?actor=bob", htmx=True).text)
    assert "2 entries" in by_bob and "alice" not in by_bob
    revokes = text_of(admin.get("/console/audit?action=token.revoke").text)
    assert "1 entry" in revokes and revoke in revokes
    one = text_of(admin.get(f"/console/audit?resource_type=token&resource={second.id}").text)
    assert "1 entry" in one and second.id in one
    oldest = text_of(admin.get("/console/audit?sort=at").text)
    assert oldest.index(f"alice token.create token {first.id}") < oldest.index(revoke)


def test_the_audit_log_pages(admin: Browser, store: Store) -> None:
    for i in range(PER_PAGE + 1):
        tokens.create_token(store, role="viewer", name=f"t{i}", actor="pager")
    first = text_of(admin.get("/console/audit?actor=pager").text)
    assert f"{PER_PAGE + 1} entries" in first and "Page 1 of 2" in first
    second = text_of(admin.get("/console/audit?actor=pager&page=2").text)
    assert "Page 2 of 2" in second and second.count("pager token.create") == 1


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/console/audit?sort=evil", "sort by one of"),
        ("/console/audit?page=x", "not a page number"),
        ("/console/audit?actor=" + "a" * 201, "longer than 200"),
        ("/console/tokens?sort=evil", "sort by one of"),
    ],
)
def test_bad_queries_get_a_400_that_says_why(admin: Browser, path: str, says: str) -> None:
    response = admin.get(path)
    assert response.status_code == 400 and says in text_of(response.text)
