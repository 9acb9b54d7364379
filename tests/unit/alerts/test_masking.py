"""Webhook URLs carry their credential in the path: non-admins see scheme and host only."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cloche.alerts.channels import parse_channel
from cloche.alerts.masking import for_principal, mask_text, mask_url
from cloche.auth.roles import ROLES, Principal
from cloche.monitoring.entities import Alert, Monitor, MonitorConfig

HOOK = "https://hooks.example/T0/B0/XyZ?token=abc"
MASKED = "webhook:https://hooks.example/..."


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (HOOK, "https://hooks.example/..."),
        ("http://10.0.0.5:9000/hook#x", "http://10.0.0.5:9000/..."),
        ("https://hooks.example", "https://hooks.example/..."),
        ("https://user:pw@hooks.example/x", "https://hooks.example/..."),
    ],
)
def test_mask_url_keeps_scheme_and_host(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_mask_text_masks_every_webhook_spec_and_leaves_other_channels() -> None:
    text = f"sent to webhook:{HOOK} and webhook:env:SLACK_HOOK and email:ops@example.com"
    assert mask_text(text) == (
        f"sent to {MASKED} and webhook:env:SLACK_HOOK and email:ops@example.com"
    )


def test_channel_display_is_the_masked_spec() -> None:
    assert parse_channel(f"webhook:{HOOK}").display() == MASKED


def _monitor() -> Monitor:
    now = datetime.now(UTC)
    return Monitor(
        id="mon_1",
        name="churn",
        endpoint="churn",
        config=MonitorConfig(alerts=[f"webhook:{HOOK}", "log"]),
        enabled=True,
        next_run_at=now,
        created_at=now,
    )


@pytest.mark.parametrize("role", ROLES)
def test_only_an_admin_sees_a_monitors_webhook_url_whole(role: str) -> None:
    shown = for_principal(Principal(actor=role, role=role), [_monitor()])
    expected = f"webhook:{HOOK}" if role == "admin" else MASKED
    assert shown[0].config.alerts == [expected, "log"]


def test_alert_deliveries_and_channel_dicts_are_masked_for_a_viewer() -> None:
    alert = Alert(
        id=1,
        monitor="churn",
        key="skew:tenure",
        state="open",
        opened_at=datetime.now(UTC),
        details={"channel": {"kind": "webhook", "url": HOOK, "spec": f"webhook:{HOOK}"}},
        deliveries=[{"channel": f"webhook:{HOOK}", "ok": False, "last_error": "refused"}],
    )
    shown = for_principal(Principal(actor="v", role="viewer"), alert)
    assert shown.deliveries[0]["channel"] == MASKED
    assert shown.details["channel"] == {
        "kind": "webhook",
        "url": "https://hooks.example/...",
        "spec": MASKED,
    }
    assert alert.deliveries[0]["channel"] == f"webhook:{HOOK}"  # the original is untouched
