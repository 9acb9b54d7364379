"""Console pages on a real server: overview, models list and detail, moving an alias."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloche import audit
from cloche.config import Settings
from cloche.console.app import create_console
from cloche.console.paging import PER_PAGE
from cloche.endpoints import service as endpoints
from cloche.registry import service as registry
from cloche.store.store import Store

from ._console import Browser, signed_in, signed_in_as, text_of, upload_model
from .conftest import LiveServer


@pytest.fixture
def churn(store: Store, sklearn_model_file: Path) -> str:
    upload_model(store, sklearn_model_file, "churn", metrics={"auc": 0.91})
    upload_model(store, sklearn_model_file, "churn", aliases=["prod"])
    return "churn"


@pytest.fixture
def admin(live_server: LiveServer) -> Any:
    with signed_in(live_server.url, live_server.token) as browser:
        yield browser


@pytest.fixture
def viewer(live_server: LiveServer, store: Store) -> Any:
    with signed_in_as(store, live_server.url, "viewer") as browser:
        yield browser


def test_the_overview_shows_endpoints_with_their_health(
    admin: Browser, store: Store, churn: str
) -> None:
    endpoints.create_endpoint(store, name="churn-live")
    endpoints.deploy(store, endpoint="churn-live", ref="churn:2")
    endpoints.create_endpoint(store, name="empty")
    response = admin.get("/console/")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    page = text_of(response.text)
    assert "churn-live serving churn:2 100%" in page
    assert "empty nothing deployed" in page
    assert "No open alerts." in page and "No batch job is running." in page
    assert "No pipeline run is waiting for a decision." in page


def test_an_overview_section_alone_is_a_fragment(admin: Browser) -> None:
    response = admin.get("/console/overview/alerts", htmx=True)
    assert response.status_code == 200 and "<html" not in response.text
    assert 'id="overview-alerts"' in response.text
    assert admin.get("/console/overview/nonsense").status_code == 404


def test_the_models_page_lists_the_registry(admin: Browser, churn: str) -> None:
    page = text_of(admin.get("/console/models").text)
    assert "1 model" in page and "churn 2 2 prod → 2 sklearn" in page


def test_a_model_page_shows_versions_aliases_signature_and_metrics(
    admin: Browser, churn: str
) -> None:
    page = text_of(admin.get("/console/models/churn?version=1").text)
    assert "Version 1" in page and "auc 0.91" in page
    assert "input tenure float64" in page  # the signature inferred at upload
    assert "2 prod sklearn" in page  # version 2 carries the alias
    lineage = admin.get("/console/models/churn/versions/1/lineage", htmx=True)
    assert "was not made or changed by a pipeline run" in lineage.text


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/console/models/nope", 404, "does not exist"),
        ("/console/models/churn?version=9", 404, "has no version 9"),
        ("/console/models/churn?version=x", 400, "not a version number"),
        ("/console/models/churn/versions/9/lineage", 404, ""),
        ("/console/models?page=-1", 400, "pages count from 1"),
        ("/console/models?page=abc", 400, "not a page number"),
        ("/console/models?sort=evil", 400, "sort by one of"),
        ("/console/nowhere", 404, "no such page"),
    ],
)
def test_bad_paths_and_queries_get_a_clear_error_page(
    admin: Browser, churn: str, path: str, status: int, says: str
) -> None:
    response = admin.get(path)
    assert response.status_code == status and says in text_of(response.text)


def test_moving_an_alias_changes_the_registry_and_is_audited(
    admin: Browser, store: Store, churn: str
) -> None:
    form = {"csrf_token": admin.csrf(), "alias": "prod", "version": "1"}
    response = admin.post("/console/models/churn/aliases", form)
    assert response.status_code == 303 and response.headers["location"] == "/console/models/churn"
    assert registry.get_version(store, "churn@prod").version == 1
    entry = audit.list_audit(store, resource_type="model", limit=1)[0]
    assert (entry.action, entry.before, entry.after) == (
        "alias.move",
        {"version": 2},
        {"version": 1},
    )
    assert entry.actor.startswith("token:")


def test_an_htmx_alias_move_returns_only_the_updated_model_section(
    admin: Browser, churn: str
) -> None:
    form = {"csrf_token": admin.csrf(), "alias": "staging", "version": "1"}
    response = admin.post("/console/models/churn/aliases", form, htmx=True)
    assert response.status_code == 200 and "<html" not in response.text
    assert response.text.lstrip().startswith('<div id="model-main">')
    assert "staging now points at version 1" in text_of(response.text)


def test_a_service_error_appears_beside_the_alias_form(admin: Browser, churn: str) -> None:
    form = {"csrf_token": admin.csrf(), "alias": "prod", "version": "7"}
    response = admin.post("/console/models/churn/aliases", form, htmx=True)
    assert response.status_code == 404
    assert response.headers["HX-Retarget"] == "#alias-form"
    assert 'id="alias-form"' in response.text and 'id="alias-error"' in response.text
    assert "has no version 7" in text_of(response.text)
    assert _described_by_error(response.text) == ["alias-version"]  # the version is at fault
    bad_name = {"csrf_token": admin.csrf(), "alias": "no spaces!", "version": "1"}
    response = admin.post("/console/models/churn/aliases", bad_name)  # without htmx: a page
    assert response.status_code == 422 and "<html" in response.text
    assert _described_by_error(response.text) == ["alias"]


def _described_by_error(page: str) -> list[str]:
    """The ids of the inputs marked invalid and pointing at the form's error message."""
    inputs = re.findall(r"<input [^>]*>", page)
    return [
        re.search(r'id="([^"]+)"', tag)[1]  # type: ignore[index]
        for tag in inputs
        if 'aria-invalid="true"' in tag and 'aria-describedby="alias-error"' in tag
    ]


@pytest.mark.parametrize(
    ("csrf", "origin"),
    [(None, None), ("wrong", None), ("right", "http://evil.example")],
    ids=["missing", "wrong", "cross-origin"],
)
def test_a_forged_alias_move_is_forbidden_and_changes_nothing(
    admin: Browser, store: Store, churn: str, csrf: str | None, origin: str | None
) -> None:
    form = {"alias": "prod", "version": "1"}
    if csrf is not None:
        form["csrf_token"] = admin.csrf() if csrf == "right" else csrf
    response = admin.post("/console/models/churn/aliases", form, origin=origin)
    assert response.status_code == 403
    assert registry.get_version(store, "churn@prod").version == 2


def test_a_viewer_sees_no_alias_form_and_a_forged_post_gets_the_apis_403(
    viewer: Any, live_server: LiveServer, store: Store, churn: str
) -> None:
    page = viewer.get("/console/models/churn")
    assert page.status_code == 200 and 'id="alias-form"' not in page.text
    form = {"csrf_token": viewer.csrf(), "alias": "prod", "version": "1"}
    response = viewer.post("/console/models/churn/aliases", form)
    api = httpx.put(
        f"{live_server.url}/api/v1/models/churn/aliases/prod",
        json={"version": 1},
        headers={"Authorization": f"Bearer {viewer.token}"},
    )
    assert response.status_code == api.status_code == 403
    assert api.json()["error"]["message"] in text_of(response.text)
    assert registry.get_version(store, "churn@prod").version == 2


def test_search_sort_and_pages_of_models(
    admin: Browser, store: Store, sklearn_model_file: Path
) -> None:
    for i in range(PER_PAGE + 5):
        upload_model(store, sklearn_model_file, f"m{i:02d}")
    upload_model(store, sklearn_model_file, "fraud")
    first = text_of(admin.get("/console/models").text)
    assert f"{PER_PAGE + 6} models" in first and "Page 1 of 2" in first
    assert "fraud" in first and "m00" in first and "m29" not in first
    second = text_of(admin.get("/console/models?page=2").text)
    assert "m29" in second and "m00" not in second
    backwards = text_of(admin.get("/console/models?sort=-name").text)
    assert backwards.index("m29") < backwards.index("m28") and "fraud" not in backwards
    found = admin.get("/console/models?q=FRA", htmx=True)
    assert "<html" not in found.text and found.text.lstrip().startswith(
        '<section id="models-table"'
    )
    assert "1 model matching “FRA”" in text_of(found.text) and "m00" not in found.text
    assert "Page 9 of" not in text_of(admin.get("/console/models?page=9").text)  # clamped


def test_every_console_route_checks_the_session_before_reading_a_body(
    settings: Settings, store: Store
) -> None:
    """Each route, called without a session: refused, and ``receive`` never called."""
    app = create_console(settings, store)
    checked = 0
    for route in app.routes:
        path = getattr(route, "path", "")
        if path.startswith(("/sign-in", "/static")):
            continue  # sign-in has its pre-session check; static files take no bodies
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method == "HEAD":
                continue
            concrete = path.replace("{name}", "churn").replace("{version:int}", "1")
            concrete = concrete.replace("{section:str}", "alerts")
            status, reads = asyncio.run(_call_without_session(app, method, concrete))
            assert status in (303, 401) and reads == 0, (method, path, status, reads)
            checked += 1
    assert checked >= 6


async def _call_without_session(app: Any, method: str, path: str) -> tuple[int, int]:
    reads = 0
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"csrf_token=x&alias=prod", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    scope = {
        "type": "http",
        "method": method,
        "path": "/console" + path,
        "root_path": "/console",
        "raw_path": ("/console" + path).encode(),
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8080"),
            (b"origin", b"http://127.0.0.1:8080"),
            (b"content-type", b"application/x-www-form-urlencoded"),
        ],
        "scheme": "http",
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8080),
        "http_version": "1.1",
    }
    await app(scope, receive, send)
    return statuses[0], reads
