"""Console alerts page on a real server: open and resolved alerts with their breaching values,
search, sort and pages, and acknowledging one as the API does."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from cloche import audit
from cloche.config import Settings
from cloche.monitoring import runs, service
from cloche.store.store import Store
from tests.integration import test_monitors as monitored

from ._console import Browser, text_of
from .conftest import LiveServer
from .test_console_monitors import NOW, admin, viewer, watched

__all__ = ["admin", "viewer", "watched"]  # fixtures, imported for pytest


def _open(store: Store) -> dict[str, int]:
    return {a.key: a.id for a in service.list_alerts(store, state="open")}


def test_open_alerts_show_what_breached_by_how_much(
    admin: Browser, store: Store, watched: str
) -> None:
    response = admin.get("/console/alerts")
    assert response.status_code == 200
    page = text_of(response.text)
    assert "2 open alerts" in page
    drift = service.get_alert(store, _open(store)["drift:spend"])
    assert drift.value is not None and drift.threshold == 0.3
    row = f"{drift.id} churn drift:spend {drift.value:.3g} 0.3 open"
    assert row in page and f'action="/console/alerts/{drift.id}/ack"' in response.text


def test_resolved_alerts_are_a_filter_away(
    admin: Browser, store: Store, settings: Settings, watched: str
) -> None:
    for hour in (0, 1):  # two quiet hours: no skew, then no drift against the drifted one
        start = NOW + timedelta(hours=hour)
        monitored.log_traffic(store, start, 500, {})
        runs.run_monitor(store, "churn", settings=settings, now=start + timedelta(hours=1))
    assert "No open alerts." in text_of(admin.get("/console/alerts").text)
    resolved = admin.get("/console/alerts?state=resolved", htmx=True)
    assert resolved.text.lstrip().startswith('<section id="alerts-table"')
    page = text_of(resolved.text)
    assert "2 resolved alerts" in page and "skew:spend" in page and '/ack"' not in resolved.text
    assert "2 alerts" in text_of(admin.get("/console/alerts?state=all").text)


def test_search_and_sort_alerts(admin: Browser, store: Store, watched: str) -> None:
    found = text_of(admin.get("/console/alerts?q=DRIFT").text)
    assert "1 open alert matching “DRIFT”" in found and "skew:spend" not in found
    first, second = sorted(_open(store).items(), key=lambda item: item[1])  # opened together
    newest = text_of(admin.get("/console/alerts").text)
    assert newest.index(second[0]) < newest.index(first[0])  # ties: the later id first
    oldest = text_of(admin.get("/console/alerts?sort=opened").text)
    assert oldest.index(first[0]) < oldest.index(second[0])


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/console/alerts?state=closed", 400, "state is one of: open, resolved, all"),
        ("/console/alerts?sort=value", 400, "sort by one of"),
        ("/console/alerts?page=x", 400, "not a page number"),
    ],
)
def test_bad_alert_queries_get_a_clear_error_page(
    admin: Browser, watched: str, path: str, status: int, says: str
) -> None:
    response = admin.get(path)
    assert response.status_code == status and says in text_of(response.text)


def test_acknowledging_shows_who_did_it_and_is_audited(
    admin: Browser, store: Store, watched: str
) -> None:
    alert_id = _open(store)["drift:spend"]
    form = {"csrf_token": admin.csrf("/console/alerts")}
    response = admin.post(f"/console/alerts/{alert_id}/ack", form, htmx=True)
    assert response.status_code == 200
    assert response.text.lstrip().startswith(f'<tr id="alert-{alert_id}">')
    acked = service.get_alert(store, alert_id)
    assert acked.acked_by is not None and acked.acked_by.startswith("token:")
    assert f"by {acked.acked_by}" in text_of(response.text)
    assert acked.state == "open"  # acknowledged, still breached
    entry = audit.list_audit(store, resource_type="alert", limit=1)[0]
    assert (entry.action, entry.resource) == ("alert.ack", str(alert_id))
    back = {**form, "back": "/console/alerts?state=all"}
    plain = admin.post(f"/console/alerts/{_open(store)['skew:spend']}/ack", back)
    assert plain.status_code == 303 and plain.headers["location"] == "/console/alerts?state=all"
    elsewhere = {**form, "back": "https://evil.example/"}
    assert (
        admin.post(f"/console/alerts/{alert_id}/ack", elsewhere).headers["location"]
        == "/console/alerts"
    )


def test_acknowledging_a_missing_alert_says_so_beside_its_button(
    admin: Browser, watched: str
) -> None:
    form = {"csrf_token": admin.csrf("/console/alerts")}
    response = admin.post("/console/alerts/999/ack", form, htmx=True)
    assert response.status_code == 404 and response.headers["HX-Retarget"] == "#ack-error-999"
    assert "alert 999 does not exist" in text_of(response.text)
    page = admin.post("/console/alerts/999/ack", form)
    assert page.status_code == 404 and "<html" in page.text


def test_a_forged_ack_is_refused(admin: Browser, store: Store, watched: str) -> None:
    alert_id = _open(store)["drift:spend"]
    assert admin.post(f"/console/alerts/{alert_id}/ack", {}).status_code == 403
    assert service.get_alert(store, alert_id).acked_at is None


def test_a_viewer_sees_alerts_without_ack_and_a_forged_ack_gets_the_apis_403(
    viewer: Any, live_server: LiveServer, store: Store, watched: str
) -> None:
    page = viewer.get("/console/alerts")
    assert "2 open alerts" in text_of(page.text) and '/ack"' not in page.text
    alert_id = _open(store)["drift:spend"]
    form = {"csrf_token": viewer.csrf("/console/alerts")}
    response = viewer.post(f"/console/alerts/{alert_id}/ack", form)
    api = httpx.post(
        f"{live_server.url}/api/v1/alerts/{alert_id}/ack",
        headers={"Authorization": f"Bearer {viewer.token}"},
    )
    assert response.status_code == api.status_code == 403
    assert api.json()["error"]["message"] in text_of(response.text)
    assert service.get_alert(store, alert_id).acked_at is None
