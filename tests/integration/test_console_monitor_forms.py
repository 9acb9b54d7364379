"""Creating and deleting monitors from the console on a real server: the monitoring service
with the API's role, each bad value shown beside its control, nothing written on a refusal."""

from __future__ import annotations

import re

import httpx
import pytest

from cloche import audit
from cloche.endpoints import service as endpoints
from cloche.monitoring import service
from cloche.monitoring.entities import MonitorConfig
from cloche.store.store import Store

from ._console import Browser, text_of
from .conftest import LiveServer
from .test_console_monitors import admin, viewer

__all__ = ["admin", "viewer"]  # fixtures, imported for pytest

FORM = {
    "endpoint": "churn",
    "name": "churn-watch",
    "every": "30m",
    "window": "2h",
    "metric": "psi",
    "skew_threshold": "0.25",
    "drift_threshold": "0.4",
    "features": "tenure=0.2\nspend=0.1",
    "alerts": "log",
    "cooldown": "1h",
    "min_breaches": "2",
    "of_runs": "3",
    "min_rows": "20",
}


@pytest.fixture(autouse=True)
def churn(store: Store) -> str:
    """The endpoint the form's monitor watches."""
    return endpoints.create_endpoint(store, name="churn").name


def create(browser: Browser, htmx: bool = False, **changes: str) -> httpx.Response:
    form = {"csrf_token": browser.csrf("/console/monitors"), **FORM, **changes}
    return browser.post("/console/monitors", form, htmx=htmx)


def error_beside(page: str, control: str) -> str:
    """The message shown beside ``control``, which names it as its description."""
    found = re.search(rf'<p id="monitor-{control}-error"[^>]*>(.*?)</p>', page, re.S)
    assert found is not None, f"no message beside {control}"
    assert f'aria-describedby="monitor-{control}-error"' in page
    return text_of(found.group(1))


def test_the_form_creates_the_monitor_the_cli_would_and_opens_it(
    admin: Browser, store: Store
) -> None:
    response = create(admin)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/monitors/churn-watch"
    made = service.get_monitor(store, "churn-watch")
    assert made.endpoint == "churn"
    assert made.config == MonitorConfig(
        every_s=1800,
        window_s=7200,
        metric="psi",
        skew_threshold=0.25,
        drift_threshold=0.4,
        feature_thresholds={"tenure": 0.2, "spend": 0.1},
        alerts=["log"],
        cooldown_s=3600,
        min_breaches=2,
        of_runs=3,
        min_rows=20,
    )
    [entry] = audit.list_audit(store, resource_type="monitor", limit=1)
    assert (entry.action, entry.resource) == ("monitor.create", "churn-watch")
    assert "Monitor churn-watch" in text_of(admin.get(response.headers["location"]).text)


@pytest.mark.parametrize(
    ("control", "changes", "status", "says"),
    [
        ("endpoint", {"endpoint": ""}, 422, "no endpoint to watch"),
        ("endpoint", {"endpoint": "nope"}, 404, "nope"),
        ("name", {"name": "bad name!"}, 422, "bad name!"),
        ("every", {"every": "soon"}, 422, "run every 'soon' is not a duration"),
        ("every", {"every": "5s"}, 422, "'5s'"),
        ("metric", {"metric": "cosine"}, 422, "no metric 'cosine'"),
        ("skew_threshold", {"skew_threshold": "high"}, 422, "skew threshold 'high' is not"),
        ("drift_threshold", {"drift_threshold": "-1"}, 422, "'-1'"),
        ("features", {"features": "tenure"}, 422, "'tenure' is not NAME=NUMBER"),
        ("alerts", {"alerts": "sms:123"}, 422, "sms:123"),
        ("min_breaches", {"min_breaches": "3", "of_runs": "1"}, 422, "cannot exceed of_runs"),
        ("min_rows", {"min_rows": "many"}, 422, "minimum rows 'many' is not a number"),
    ],
)
def test_a_bad_value_is_refused_beside_its_control_and_nothing_is_written(
    admin: Browser, store: Store, control: str, changes: dict[str, str], status: int, says: str
) -> None:
    response = create(admin, **changes)
    assert response.status_code == status
    assert says in error_beside(response.text, control)
    assert f'value="{FORM["cooldown"]}"' in response.text  # what was typed is kept
    assert service.list_monitors(store) == []


def test_with_htmx_a_refusal_swaps_only_the_form(admin: Browser, store: Store) -> None:
    response = create(admin, htmx=True, every="soon")
    assert response.status_code == 422 and response.headers["HX-Retarget"] == "#monitor-create"
    assert response.text.lstrip().startswith("<form") and "<html" not in response.text
    created = create(admin, htmx=True)
    assert created.headers["HX-Redirect"] == "/console/monitors/churn-watch"


def test_a_second_monitor_of_the_same_name_is_refused_beside_the_name(
    admin: Browser, store: Store
) -> None:
    assert create(admin).status_code == 303
    response = create(admin, every="1h")
    assert response.status_code == 409
    assert "already exists" in error_beside(response.text, "name")
    assert service.get_monitor(store, "churn-watch").config.every_s == 1800


def test_delete_needs_its_box_ticked_then_removes_the_monitor_and_is_audited(
    admin: Browser, store: Store
) -> None:
    create(admin)
    page = admin.get("/console/monitors/churn-watch").text
    assert 'id="monitor-delete"' in page
    form = {"csrf_token": admin.csrf("/console/monitors/churn-watch")}
    unticked = admin.post("/console/monitors/churn-watch/delete", form)
    assert unticked.status_code == 422
    assert "was not ticked" in text_of(unticked.text)
    assert 'aria-describedby="monitor-delete-error"' in unticked.text
    assert service.get_monitor(store, "churn-watch")
    deleted = admin.post("/console/monitors/churn-watch/delete", {**form, "confirm": "yes"})
    assert deleted.status_code == 303 and deleted.headers["location"] == "/console/monitors"
    assert service.list_monitors(store) == []
    [entry] = audit.list_audit(store, resource_type="monitor", limit=1)
    assert entry.action == "monitor.delete"
    gone = admin.post("/console/monitors/churn-watch/delete", {**form, "confirm": "yes"})
    assert gone.status_code == 404 and "churn-watch" in error_beside_delete(gone.text)


def error_beside_delete(page: str) -> str:
    found = re.search(r'<p id="monitor-delete-error"[^>]*>(.*?)</p>', page, re.S)
    assert found is not None, "no message beside the delete form"
    return text_of(found.group(1))


def test_forged_posts_without_csrf_write_nothing(admin: Browser, store: Store) -> None:
    form = {**FORM, "csrf_token": "forged"}
    assert admin.post("/console/monitors", form).status_code == 403
    assert service.list_monitors(store) == []
    create(admin)
    forged = {"csrf_token": "forged", "confirm": "yes"}
    assert admin.post("/console/monitors/churn-watch/delete", forged).status_code == 403
    other_site = {"csrf_token": admin.csrf(), "confirm": "yes"}
    refused = admin.post(
        "/console/monitors/churn-watch/delete", other_site, origin="https://evil.example"
    )
    assert refused.status_code == 403 and service.get_monitor(store, "churn-watch")


def test_a_viewer_gets_no_forms_and_the_apis_403(
    admin: Browser, viewer: Browser, live_server: LiveServer, store: Store
) -> None:
    create(admin)
    assert 'id="monitor-create"' not in viewer.get("/console/monitors").text
    assert 'id="monitor-delete"' not in viewer.get("/console/monitors/churn-watch").text
    made = viewer.post(
        "/console/monitors", {"csrf_token": viewer.csrf(), **FORM, "name": "by-viewer"}
    )
    api = httpx.post(
        f"{live_server.url}/api/v1/monitors",
        json={"endpoint": "churn", "name": "by-viewer"},
        headers={"Authorization": f"Bearer {viewer.token}"},
    )
    assert made.status_code == api.status_code == 403
    assert api.json()["error"]["message"] in text_of(made.text)
    form = {"csrf_token": viewer.csrf(), "confirm": "yes"}
    assert viewer.post("/console/monitors/churn-watch/delete", form).status_code == 403
    assert [m.name for m in service.list_monitors(store)] == ["churn-watch"]
