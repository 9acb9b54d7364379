"""Over REST, monitors, runs and the audit log show webhook URLs whole to admins only."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import cloche
from cloche.auth import tokens
from cloche.config import Settings
from cloche.store.store import Store
from tests.integration.conftest import LiveServer

# On loopback, allowed below: a saved webhook's host must resolve, and tests reach no network.
HOOK = "http://127.0.0.1:9/T0/B0/XyZ?token=abc"
MASKED = "webhook:http://127.0.0.1:9/..."


@pytest.fixture(autouse=True)
def _loopback_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOCHE_EGRESS__ALLOW", "127.0.0.1")


def _token(settings: Settings, role: str) -> str:
    store = Store.open(settings)
    try:
        return tokens.create_token(store, role=role, name=role).token
    finally:
        store.close()


def _watch_with_a_webhook(settings: Settings, model: Path) -> None:
    with cloche.Client(settings=settings) as local:
        local.models.upload(model, name="churn")
        local.endpoints.create("churn")
        local.monitors.create("churn", alerts=[f"webhook:{HOOK}", "log"])


def test_a_viewer_sees_webhook_urls_masked_in_monitors_and_audit(
    live_server: LiveServer, sklearn_model_file: Path
) -> None:
    _watch_with_a_webhook(live_server.settings, sklearn_model_file)
    viewer = _token(live_server.settings, "viewer")

    with cloche.Client(live_server.url, token=viewer) as sdk:
        assert [m.config.alerts for m in sdk.monitors.list()] == [[MASKED, "log"]]
        assert sdk.monitors.get("churn").config.alerts == [MASKED, "log"]
    audit = httpx.get(
        f"{live_server.url}/api/v1/audit",
        params={"resource_type": "monitor"},
        headers={"Authorization": f"Bearer {viewer}"},
    )
    assert audit.status_code == 200, audit.text
    assert audit.json()[0]["after"]["alerts"] == [MASKED, "log"]
    assert "XyZ" not in audit.text and "token=abc" not in audit.text


def test_an_admin_sees_webhook_urls_whole(
    live_server: LiveServer, sklearn_model_file: Path
) -> None:
    _watch_with_a_webhook(live_server.settings, sklearn_model_file)
    admin = _token(live_server.settings, "admin")

    with cloche.Client(live_server.url, token=admin) as sdk:
        assert sdk.monitors.get("churn").config.alerts == [f"webhook:{HOOK}", "log"]
    audit = httpx.get(
        f"{live_server.url}/api/v1/audit",
        params={"resource_type": "monitor"},
        headers={"Authorization": f"Bearer {admin}"},
    ).json()
    assert audit[0]["after"]["alerts"] == [f"webhook:{HOOK}", "log"]
