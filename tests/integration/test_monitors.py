"""Monitors end to end on a real store and payload log: a day whose second half drifts on two
features raises one digest, by webhook and by email, naming exactly those two features."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import cloche
from cloche.auth.roles import LOCAL_USER
from cloche.config import Settings
from cloche.egress import Egress
from cloche.endpoints import service as endpoints
from cloche.errors import DestinationRefused, EndpointNotFound, InvalidInput, MonitorNotFound
from cloche.logs.service import log_root
from cloche.monitoring import runs, service
from cloche.monitoring.entities import MonitorConfig
from cloche.registry.inspection import inspect_here
from cloche.registry.upload import upload_model
from cloche.serving.payload_log import PayloadLog, encode_row
from cloche.store.store import Store
from tests.integration._receivers import Mailbox, Webhook, smtp_receiver, webhook_receiver
from tests.integration.conftest import ServerFactory

FEATURES = ["tenure", "spend", "visits", "age"]
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
LOOPBACK = Egress.from_allow("127.0.0.1")  # the receivers listen there


@pytest.fixture
def hook() -> Iterator[Webhook]:
    with webhook_receiver() as receiver:
        yield receiver


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with smtp_receiver() as box:
        yield box


@pytest.fixture
def alert_settings(tmp_path: Path, mailbox: Mailbox) -> Settings:
    return Settings(
        home=tmp_path / "home",
        egress={"allow": ["127.0.0.1"]},  # the receivers listen on loopback
        alerts={
            "smtp_host": mailbox.host,
            "smtp_port": mailbox.port,
            "smtp_security": "none",
            "attempts": 2,
            "backoff_s": 0.01,
            "timeout_s": 5,
        },
    )


@pytest.fixture
def churn(alert_settings: Settings, sklearn_model_file: Path, tmp_path: Path) -> Iterator[Store]:
    """An endpoint serving churn:1, whose baseline is 5,000 rows of N(0, 1) features."""
    rng = np.random.default_rng(0)
    baseline = tmp_path / "baseline.parquet"
    pq.write_table(pa.table({f: rng.normal(size=5_000) for f in FEATURES}), baseline)
    store = Store.open(alert_settings)
    upload_model(
        store,
        principal=LOCAL_USER,
        inspector=inspect_here,
        source=sklearn_model_file,
        name="churn",
        baseline=baseline,
    )
    endpoints.create_endpoint(store, name="churn")
    endpoints.deploy(store, endpoint="churn", ref="churn:1")
    yield store
    store.close()


def log_traffic(store: Store, start: datetime, rows: int, shift: dict[str, float]) -> None:
    """``rows`` one-row predictions spread over the hour from ``start``, as the server logs
    them; features named in ``shift`` are moved by that many standard deviations."""
    rng = np.random.default_rng(int(start.timestamp()))
    X = rng.normal(size=(rows, len(FEATURES)))
    for name, delta in shift.items():
        X[:, FEATURES.index(name)] += delta
    step_ms = 3_600_000 // rows
    first_ms = int(start.timestamp() * 1000)
    lines = [
        encode_row(
            (
                first_ms + i * step_ms,
                f"r{first_ms}-{i}",
                "churn",
                "churn",
                1,
                1,
                False,
                200,
                2.5,
                [X[i].tolist()],
                {"predict": [1]},
                None,
                "predict",
            )
        )
        for i in range(rows)
    ]
    log = PayloadLog(log_root(store.home))
    log.write(lines)
    log.close()


def test_drift_on_two_features_sends_one_digest_by_webhook_and_email_naming_them(
    churn: Store, alert_settings: Settings, hook: Webhook, mailbox: Mailbox
) -> None:
    log_traffic(churn, NOW - timedelta(hours=2), 1_000, {})
    log_traffic(churn, NOW - timedelta(hours=1), 1_000, {"spend": 2.0, "age": -2.0})
    service.create_monitor(
        churn,
        endpoint="churn",
        config=MonitorConfig(alerts=[f"webhook:{hook.url}", "email:ops@example.com"]),
        egress=LOOPBACK,
    )
    run = runs.run_monitor(churn, "churn", settings=alert_settings, now=NOW)

    assert run.status == "breached", run.message
    assert run.rows == 1_000
    assert sorted(run.breaches) == ["drift:age", "drift:spend", "skew:age", "skew:spend"]
    spend = run.results["features"]["spend"]["skew"]
    assert spend["metric"] == "js" and spend["log_base"] == 2 and spend["value"] > 0.3
    assert run.results["features"]["tenure"]["skew"]["value"] < 0.05

    assert len(hook.bodies) == 1 and len(mailbox.messages) == 1
    text = hook.bodies[0]["text"]
    for name in ("spend", "age"):
        assert f"skew:{name}" in text and f"drift:{name}" in text
    assert "tenure" not in text and "visits" not in text
    assert "threshold 0.3" in text
    email = mailbox.messages[0]
    assert "churn" in email["Subject"] and "spend" in email.get_payload()
    opened = service.list_alerts(churn, state="open")
    assert sorted(a.key for a in opened) == sorted(run.breaches)
    assert all(len(a.deliveries) == 2 and all(d["ok"] for d in a.deliveries) for a in opened)


def test_alerts_are_not_sent_twice_within_the_cooldown_and_resolve_when_the_drift_ends(
    churn: Store, alert_settings: Settings, hook: Webhook
) -> None:
    log_traffic(churn, NOW - timedelta(hours=2), 600, {})
    log_traffic(churn, NOW - timedelta(hours=1), 600, {"visits": 3.0})
    service.create_monitor(
        churn,
        endpoint="churn",
        config=MonitorConfig(alerts=[f"webhook:{hook.url}"]),
        egress=LOOPBACK,
    )
    runs.run_monitor(churn, "churn", settings=alert_settings, now=NOW)
    assert len(hook.bodies) == 1
    # The same window again, ten minutes later: still breached, inside the 6 h cooldown.
    again = runs.run_monitor(churn, "churn", settings=alert_settings, now=NOW)
    assert again.status == "breached" and len(hook.bodies) == 1
    assert len(service.list_alerts(churn, state="open")) == 2  # skew and drift of visits
    # The next hour is back to normal: both alerts resolve, in one message.
    log_traffic(churn, NOW, 600, {})
    later = runs.run_monitor(churn, "churn", settings=alert_settings, now=NOW + timedelta(hours=1))
    assert "skew:visits" not in later.breaches
    assert len(hook.bodies) == 2 and "resolved" in hook.bodies[1]["text"]
    resolved = {a.key for a in service.list_alerts(churn, state="resolved")}
    assert "skew:visits" in resolved


def test_a_channel_that_stays_down_is_recorded_and_the_run_still_completes(
    churn: Store, alert_settings: Settings
) -> None:
    log_traffic(churn, NOW - timedelta(hours=1), 300, {"spend": 3.0})
    service.create_monitor(
        churn,
        endpoint="churn",
        config=MonitorConfig(alerts=["webhook:http://127.0.0.1:9/x"]),
        egress=LOOPBACK,
    )
    run = runs.run_monitor(churn, "churn", settings=alert_settings, now=NOW)
    assert run.status == "breached"
    delivery = run.results["alerts"]["deliveries"][0]
    assert delivery["ok"] is False and delivery["attempts"] == 2
    alert = service.list_alerts(churn, state="open")[0]
    assert alert.deliveries[0]["ok"] is False and alert.last_notified_at is None


def test_undrifted_traffic_flags_nothing(churn: Store, alert_settings: Settings) -> None:
    log_traffic(churn, NOW - timedelta(hours=2), 2_000, {})
    log_traffic(churn, NOW - timedelta(hours=1), 2_000, {})
    service.create_monitor(churn, endpoint="churn", config=MonitorConfig())
    run = runs.run_monitor(churn, "churn", settings=alert_settings, now=NOW)
    assert run.status == "ok", run.breaches
    assert run.results["health"]["p50_ms"]["value"] == pytest.approx(2.5)


def test_a_quiet_window_gives_no_verdict(churn: Store, alert_settings: Settings) -> None:
    log_traffic(churn, NOW - timedelta(hours=1), 10, {"spend": 5.0})
    service.create_monitor(churn, endpoint="churn", config=MonitorConfig(min_rows=50))
    run = runs.run_monitor(churn, "churn", settings=alert_settings, now=NOW)
    assert run.status == "no_data" and "fewer than min_rows 50" in run.message


def test_bad_monitor_requests_are_clear_errors(churn: Store) -> None:
    with pytest.raises(EndpointNotFound):
        service.create_monitor(churn, endpoint="ghost", config=MonitorConfig())
    with pytest.raises(InvalidInput, match="webhook"):
        service.create_monitor(churn, endpoint="churn", config=MonitorConfig(alerts=["sms:123"]))
    with pytest.raises(ValueError, match="min_breaches"):
        MonitorConfig(min_breaches=3, of_runs=2)
    with pytest.raises(MonitorNotFound):
        service.get_monitor(churn, "ghost")


def test_monitors_through_the_sdk(client: cloche.Client, sklearn_model_file: Path) -> None:
    client.models.upload(sklearn_model_file, name="churn")
    client.endpoints.create("churn")
    client.endpoints.deploy("churn", "churn:1")
    made = client.monitors.create("churn", every_s=600, skew_threshold=0.2, alerts=["log"])
    assert made.config.every_s == 600 and made.config.alerts == ["log"]
    assert [m.name for m in client.monitors.list()] == ["churn"]
    run = client.monitors.run("churn")
    assert run.status == "no_data"
    assert [r.id for r in client.monitors.runs("churn")] == [run.id]
    assert client.monitors.pause("churn").enabled is False
    assert client.alerts.list() == []
    client.monitors.delete("churn")
    assert client.monitors.list() == []


def test_a_webhook_url_from_the_environment_is_never_stored(
    churn: Store, alert_settings: Settings, hook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import select

    from cloche.store.tables import AuditRow, MonitorRow

    log_traffic(churn, NOW - timedelta(hours=1), 300, {"spend": 3.0})
    made = service.create_monitor(
        churn, endpoint="churn", config=MonitorConfig(alerts=["webhook:env:CHURN_HOOK"])
    )
    assert made.config.alerts == ["webhook:env:CHURN_HOOK"]
    monkeypatch.delenv("CHURN_HOOK", raising=False)
    unset = runs.run_monitor(churn, "churn", settings=alert_settings, now=NOW)
    delivery = unset.results["alerts"]["deliveries"][0]
    assert delivery["channel"] == "webhook:env:CHURN_HOOK" and delivery["ok"] is False
    assert delivery["attempts"] == 1 and "CHURN_HOOK is not set" in delivery["last_error"]

    monkeypatch.setenv("CHURN_HOOK", hook.url)  # read at send time: no restart, no update
    service.delete_monitor(churn, "churn")
    service.create_monitor(
        churn, endpoint="churn", config=MonitorConfig(alerts=["webhook:env:CHURN_HOOK"])
    )
    run = runs.run_monitor(churn, "churn", settings=alert_settings, now=NOW)
    assert len(hook.bodies) == 1 and "skew:spend" in hook.bodies[0]["text"]
    assert run.results["alerts"]["deliveries"][0]["ok"] is True
    with churn.transaction() as session:  # the URL is nowhere in the store
        stored = [repr(row.config) for row in session.scalars(select(MonitorRow))]
        stored += [repr(a.details) for a in service_alert_rows(session)]
        stored += [repr((r.before, r.after)) for r in session.scalars(select(AuditRow))]
    assert stored and not any(hook.url in text for text in stored)
    assert not any("127.0.0.1" in str(a.deliveries) for a in service.list_alerts(churn))


def service_alert_rows(session: Any) -> list[Any]:
    from sqlalchemy import select

    from cloche.store.tables import AlertRow

    return list(session.scalars(select(AlertRow)))


def test_a_bad_environment_webhook_is_refused_without_echoing_it(churn: Store) -> None:
    with pytest.raises(InvalidInput, match="name of an environment variable") as caught:
        service.create_monitor(
            churn, endpoint="churn", config=MonitorConfig(alerts=["webhook:env:https://x/T0"])
        )
    assert "T0" not in caught.value.message


def test_the_scheduler_runs_due_monitors_in_a_child_that_alerts_with_the_same_settings(
    churn: Store, alert_settings: Settings, hook: Webhook, mailbox: Mailbox
) -> None:
    from sqlalchemy import update

    from cloche import scheduler
    from cloche.store.tables import MonitorRow

    now = datetime.now(UTC)
    log_traffic(churn, now - timedelta(minutes=50), 500, {"spend": 2.0})
    service.create_monitor(
        churn,
        endpoint="churn",
        config=MonitorConfig(alerts=[f"webhook:{hook.url}", "email:ops@example.com"]),
        egress=LOOPBACK,
    )
    with churn.transaction() as session:  # due now (a new monitor first runs after --every)
        session.execute(update(MonitorRow).values(next_run_at=now - timedelta(seconds=1)))
    ticks = scheduler.for_server(churn, alert_settings)
    assert ticks.tick_once()  # the lease, then the due monitor, run by a child process
    [run] = service.list_runs(churn, "churn")
    assert "skew:spend" in run.breaches, run.message
    assert len(hook.bodies) == 1 and len(mailbox.messages) == 1  # the SMTP port came along
    assert ticks.tick_once() and len(service.list_runs(churn, "churn")) == 1  # not due again


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "2130706433", "0x7f000001", "0177.0.0.1", "127.1", "[::ffff:127.0.0.1]"]
)
def test_a_webhook_to_loopback_is_refused_when_saved(churn: Store, host: str) -> None:
    with pytest.raises(DestinationRefused, match="CLOCHE_EGRESS__ALLOW"):
        service.create_monitor(
            churn, endpoint="churn", config=MonitorConfig(alerts=[f"webhook:http://{host}:9/x"])
        )
    assert service.list_monitors(churn) == []


def test_webhook_to_loopback_is_refused_over_rest_unless_allowed(
    churn: Store, start_server: ServerFactory, hook: Webhook
) -> None:
    body = {"endpoint": "churn", "config": {"alerts": [f"webhook:{hook.url}"]}}
    strict = start_server()
    refused = httpx.post(f"{strict.url}/api/v1/monitors", json=body, headers=strict.auth)
    assert refused.status_code == 403, refused.text
    assert "CLOCHE_EGRESS__ALLOW" in refused.json()["error"]["message"]
    allowing = start_server(egress={"allow": ["127.0.0.1"]})
    with cloche.Client(allowing.url) as sdk:
        assert sdk.monitors.create("churn", alerts=[f"webhook:{hook.url}"]).name == "churn"
