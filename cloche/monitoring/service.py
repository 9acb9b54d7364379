"""Monitors and alerts: create, list, show, pause, delete, acknowledge. Runs live in runs.py."""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloche import audit
from cloche.egress import Egress
from cloche.endpoints.service import require_endpoint
from cloche.errors import (
    AlertNotFound,
    Conflict,
    MonitorNotFound,
)
from cloche.monitoring.entities import Alert, Monitor, MonitorConfig, MonitorRun
from cloche.registry.refs import check_name
from cloche.store.paging import collect
from cloche.store.store import Store
from cloche.store.tables import AlertRow, MonitorRow, MonitorRunRow, utcnow


def _check_channels(config: MonitorConfig, egress: Egress) -> MonitorConfig:
    """Each channel's spec, and a webhook's destination (checked again at every delivery; a
    ``webhook:env:`` URL is read, and so checked, only then)."""
    from cloche.alerts.channels import parse_channel

    channels = [parse_channel(a) for a in config.alerts]
    for channel in channels:
        if channel.url is not None:
            egress.check(channel.url, what="webhook")
    return config.model_copy(update={"alerts": [str(c) for c in channels]})


def create_monitor(
    store: Store,
    *,
    endpoint: str,
    config: MonitorConfig,
    name: str | None = None,
    actor: str = "local",
    egress: Egress | None = None,
) -> Monitor:
    """Watch an endpoint's traffic; the first run is one interval from now.

    A webhook channel must lead where ``egress`` allows (by default public addresses only;
    callers pass ``Settings.egress.policy()``), else DestinationRefused.
    """
    name = check_name(name or endpoint)
    config = _check_channels(config, egress or Egress())
    from cloche.alerts.pipeline_channel import check_registered

    check_registered(store, config.alerts)
    with store.transaction() as session:
        require_endpoint(session, endpoint)
        if session.scalar(select(MonitorRow.id).where(MonitorRow.name == name)) is not None:
            raise Conflict(
                f"a monitor named {name!r} already exists",
                hint="pass --name to give this one another name",
            )
        row = MonitorRow(
            id="mon_" + secrets.token_hex(5),
            name=name,
            endpoint=endpoint,
            config=config.model_dump(mode="json"),
            enabled=True,
            next_run_at=utcnow() + timedelta(seconds=config.every_s),
            created_by=actor,
        )
        session.add(row)
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="monitor.create",
            resource_type="monitor",
            resource=name,
            after={"endpoint": endpoint, **row.config},
        )
        made = entity(row)
    _record_spec(store, endpoint)
    return made


def _record_spec(store: Store, endpoint: str) -> None:
    """From now on, compaction profiles the endpoint's log for its monitors."""
    from cloche.monitoring import window

    version = window.primary_version(store, endpoint)
    if version is not None:
        window.record_spec(store, endpoint, window.feature_kinds(version))


def entity(row: MonitorRow) -> Monitor:
    return Monitor(
        id=row.id,
        name=row.name,
        endpoint=row.endpoint,
        config=MonitorConfig.model_validate(row.config),
        enabled=row.enabled,
        next_run_at=audit.as_utc(row.next_run_at),
        last_run_at=audit.as_utc(row.last_run_at) if row.last_run_at else None,
        created_at=audit.as_utc(row.created_at),
        created_by=row.created_by,
    )


def monitor_row(session: Session, name_or_id: str) -> MonitorRow:
    row = session.scalar(
        select(MonitorRow).where((MonitorRow.name == name_or_id) | (MonitorRow.id == name_or_id))
    )
    if row is None:
        raise MonitorNotFound(
            f"monitor {name_or_id!r} does not exist",
            hint="`cloche monitors list` shows the monitors",
        )
    return row


def get_monitor(store: Store, name: str) -> Monitor:
    with store.transaction() as session:
        return entity(monitor_row(session, name))


def list_monitors(store: Store, *, endpoint: str | None = None) -> list[Monitor]:
    """Every monitor by name: every page of ``listing.page_monitors``."""
    from cloche.monitoring.listing import page_monitors  # it builds on this module's entity()

    return collect(lambda page: page_monitors(store, page, endpoint=endpoint))


def set_enabled(store: Store, name: str, enabled: bool, *, actor: str = "local") -> Monitor:
    with store.transaction() as session:
        row = monitor_row(session, name)
        row.enabled = enabled
        if enabled:
            row.next_run_at = utcnow() + timedelta(seconds=int(row.config["every_s"]))
        action = "monitor.resume" if enabled else "monitor.pause"
        audit.record(session, actor=actor, action=action, resource_type="monitor", resource=name)
        return entity(row)


def delete_monitor(store: Store, name: str, *, actor: str = "local") -> None:
    """Delete a monitor with its runs and alerts."""
    with store.transaction() as session:
        row = monitor_row(session, name)
        session.delete(row)
        audit.record(
            session, actor=actor, action="monitor.delete", resource_type="monitor", resource=name
        )


def run_entity(row: MonitorRunRow, monitor_name: str) -> MonitorRun:
    return MonitorRun(
        id=row.id,
        monitor=monitor_name,
        started_at=audit.as_utc(row.started_at),
        finished_at=audit.as_utc(row.finished_at) if row.finished_at else None,
        window_start=audit.as_utc(row.window_start),
        window_end=audit.as_utc(row.window_end),
        status=row.status,  # type: ignore[arg-type]
        rows=row.rows,
        breaches=list(row.breaches or []),
        results=row.results or {},
        message=row.message,
    )


def list_runs(store: Store, name: str, *, limit: int = 20) -> list[MonitorRun]:
    """A monitor's runs, newest first."""
    with store.transaction() as session:
        monitor = monitor_row(session, name)
        rows = session.scalars(
            select(MonitorRunRow)
            .where(MonitorRunRow.monitor_id == monitor.id)
            .order_by(MonitorRunRow.id.desc())
            .limit(limit)
        )
        return [run_entity(r, monitor.name) for r in rows]


def alert_entity(row: AlertRow, monitor_name: str) -> Alert:
    return Alert(
        id=row.id,
        monitor=monitor_name,
        key=row.key,
        state=row.state,  # type: ignore[arg-type]
        opened_at=audit.as_utc(row.opened_at),
        last_notified_at=audit.as_utc(row.last_notified_at) if row.last_notified_at else None,
        resolved_at=audit.as_utc(row.resolved_at) if row.resolved_at else None,
        acked_at=audit.as_utc(row.acked_at) if row.acked_at else None,
        acked_by=row.acked_by,
        value=row.value,
        threshold=row.threshold,
        details=row.details or {},
        deliveries=list(row.deliveries or []),
    )


def list_alerts(
    store: Store, *, state: str | None = None, monitor: str | None = None, limit: int = 100
) -> list[Alert]:
    """Alerts, newest first: the first pages of ``listing.page_alerts``."""
    from cloche.monitoring.listing import page_alerts  # it builds on alert_entity() here

    return collect(lambda page: page_alerts(store, page, state=state, monitor=monitor), limit=limit)


def _alert_row(session: Session, alert_id: int) -> tuple[AlertRow, str]:
    found = session.execute(
        select(AlertRow, MonitorRow.name)
        .join(MonitorRow, MonitorRow.id == AlertRow.monitor_id)
        .where(AlertRow.id == alert_id)
    ).first()
    if found is None:
        raise AlertNotFound(
            f"alert {alert_id} does not exist", hint="`cloche alerts list` shows the alerts"
        )
    return found[0], found[1]


def get_alert(store: Store, alert_id: int) -> Alert:
    with store.transaction() as session:
        return alert_entity(*_alert_row(session, alert_id))


def ack_alert(store: Store, alert_id: int, *, actor: str = "local") -> Alert:
    """Acknowledge an alert: it stays open while breached but is not notified again."""
    with store.transaction() as session:
        row, name = _alert_row(session, alert_id)
        row.acked_at, row.acked_by = utcnow(), actor
        audit.record(
            session, actor=actor, action="alert.ack", resource_type="alert", resource=str(row.id)
        )
        return alert_entity(row, name)
