"""``client.alerts.send`` (a pipeline's send_alert): in-process and over HTTP a notice reaches a
real webhook through the egress policy; over HTTP only a role that may deploy may send."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import cloche
from cloche.auth import tokens
from cloche.config import Settings
from cloche.errors import Forbidden
from cloche.store.store import Store
from tests.integration._receivers import Webhook, webhook_receiver
from tests.integration.conftest import LiveServer


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The shared fixture's, with the loopback webhook receiver allowed."""
    return Settings(home=tmp_path / "home", egress={"allow": ["127.0.0.1"]})


@pytest.fixture
def hook() -> Iterator[Webhook]:
    with webhook_receiver() as receiver:
        yield receiver


def test_a_notice_reaches_the_webhook_and_says_what_was_delivered(
    client: cloche.Client, hook: Webhook
) -> None:
    deliveries = client.alerts.send(
        [f"webhook:{hook.url}", "log"], "rollout stopped", "churn:2 is worse than churn@prod"
    )
    assert [(d.channel, d.ok) for d in deliveries] == [(f"webhook:{hook.url}", True), ("log", True)]
    [body] = hook.bodies
    assert body["alert"]["title"] == "rollout stopped"
    assert body["text"].startswith("cloche: rollout stopped\n\nchurn:2 is worse than churn@prod")
    [entry] = client.audit.list(resource_type="notice")
    assert (entry.action, entry.resource) == ("alert.send", "rollout stopped")
    port = hook.url.split(":")[2].split("/")[0]
    assert entry.after == {f"webhook:http://127.0.0.1:{port}/...": True, "log": True}


def test_a_destination_the_egress_policy_refuses_is_reported_not_reached(
    client: cloche.Client,
) -> None:
    [delivery] = client.alerts.send(["webhook:http://10.255.255.1/hook"], "scored")
    assert not delivery.ok and "not retried" in (delivery.last_error or "")


def test_a_viewer_may_not_send_a_notice(live_server: LiveServer, hook: Webhook) -> None:
    store = Store.open(live_server.settings)
    try:
        viewer = tokens.create_token(store, role="viewer", name="dashboards").token
    finally:
        store.close()
    with cloche.Client(live_server.url, token=viewer) as client, pytest.raises(Forbidden):
        client.alerts.send([f"webhook:{hook.url}"], "scored")
    assert hook.bodies == []
