"""The ``pipeline:NAME`` alert channel on a real store and payload log: a monitor run that
breaches queues one registered run with the alert as its parameters, a re-notification queues
no second one, a channel naming no pipeline is refused when the monitor is saved, and a
pipeline deleted later is a delivery failure recorded on the alert."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete

from cloche.config import Settings
from cloche.errors import InvalidInput
from cloche.monitoring import runs, service
from cloche.monitoring.entities import MonitorConfig
from cloche.pipelines import component, pipeline, records, registered
from cloche.store.store import Store
from cloche.store.tables import PipelineRow
from tests.integration.test_monitors import (  # noqa: F401 -- fixtures
    NOW,
    alert_settings,
    churn,
    log_traffic,
    mailbox,
)


@component
def retrain(monitor: str, breached: list, alert_id: str) -> str:  # type: ignore[type-arg]
    return f"{monitor}: {breached} ({alert_id})"


@pipeline(name="retrain")
def on_drift(alert_id: str, monitor: str, breached: list, values: dict, notes: str = "") -> None:  # type: ignore[type-arg]
    retrain(monitor=monitor, breached=breached, alert_id=alert_id)


@pytest.fixture
def drifting(churn: Store) -> Store:  # noqa: F811 -- the fixture imported above
    registered.register(churn, on_drift, source="# retrain", file_name="r.py", actor="test")
    log_traffic(churn, NOW - timedelta(hours=2), 600, {})
    log_traffic(churn, NOW - timedelta(hours=1), 600, {"visits": 3.0})
    return churn


def test_a_breach_queues_one_run_with_the_alert_and_a_reminder_none(
    drifting: Store,
    alert_settings: Settings,  # noqa: F811 -- the fixture imported above
) -> None:
    store = drifting
    config = MonitorConfig(alerts=["pipeline:retrain", "log"], cooldown_s=60)
    service.create_monitor(store, endpoint="churn", config=config)
    first = runs.run_monitor(store, "churn", settings=alert_settings, now=NOW)
    assert first.status == "breached"
    queued = records.list_runs(store, pipeline="retrain")
    assert len(queued) == 1
    run = queued[0]
    alerts = service.list_alerts(store, state="open")
    assert sorted(a.key for a in alerts) == ["drift:visits", "skew:visits"]
    first_id = min(a.id for a in alerts)
    assert run.trigger == f"alert:{first_id}" and run.state == "queued"
    assert run.params["alert_id"] == str(first_id) and run.params["monitor"] == "churn"
    assert sorted(run.params["breached"]) == ["drift:visits", "skew:visits"]
    assert set(run.params["values"]) == {"drift:visits", "skew:visits"}
    assert run.params["notes"] == ""  # not offered by an alert: the pipeline's default
    assert all(d["ok"] for a in alerts for d in a.deliveries)
    # Past the cooldown, still breached: the alerts are re-notified, no run is queued again.
    later = runs.run_monitor(
        store, "churn", settings=alert_settings, now=NOW + timedelta(minutes=5)
    )
    assert later.results["alerts"]["renotified"]
    assert len(records.list_runs(store, pipeline="retrain")) == 1


def test_a_channel_naming_no_registered_pipeline_is_refused(drifting: Store) -> None:
    with pytest.raises(InvalidInput) as err:
        service.create_monitor(
            drifting, endpoint="churn", config=MonitorConfig(alerts=["pipeline:nowhere"])
        )
    assert "names no registered pipeline" in err.value.message
    assert "cloche pipelines register" in (err.value.hint or "")
    assert service.list_monitors(drifting) == []


def test_a_pipeline_deleted_later_is_a_recorded_delivery_failure(
    drifting: Store,
    alert_settings: Settings,  # noqa: F811 -- the fixture imported above
) -> None:
    store = drifting
    service.create_monitor(
        store, endpoint="churn", config=MonitorConfig(alerts=["pipeline:retrain"])
    )
    with store.transaction() as session:
        session.execute(delete(PipelineRow).where(PipelineRow.name == "retrain"))
    run = runs.run_monitor(store, "churn", settings=alert_settings, now=NOW)
    assert run.status == "breached"
    delivery = run.results["alerts"]["deliveries"][0]
    assert delivery["ok"] is False and "no registered pipeline 'retrain'" in delivery["last_error"]
    alert = service.list_alerts(store, state="open")[0]
    assert alert.deliveries[0]["ok"] is False and alert.last_notified_at is None
    assert records.list_runs(store, pipeline="retrain") == []
