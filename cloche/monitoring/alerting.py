"""After a monitor run: open, re-notify or resolve its alerts and send one digest per run.

The rules are in ``alerts/lifecycle.py`` and the message in ``alerts/digest.py``; this module
reads and writes the alert rows around them, and records every delivery on the alerts it was
about (a channel that stays down is recorded there and never stops the monitor).

A monitor has two alert streams: its endpoint's traffic, and the batch jobs run through it
(``batch_runs.py``), whose keys start with ``batch:``. Each run opens, dedupes and resolves
only its own stream's alerts and counts only its own kind of runs for M-of-N, so a clean batch
job never resolves a live skew alert, nor the next hourly run a batch job's.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloche.alerts import pipeline_channel
from cloche.alerts.channels import parse_channel
from cloche.alerts.delivery import deliver_all
from cloche.alerts.digest import AlertMessage, Breach, breach_from_results, build_message
from cloche.alerts.lifecycle import AlertPolicy, Decision, OpenAlert, decide, previous_from_runs
from cloche.config import Settings
from cloche.monitoring.entities import MonitorConfig, MonitorRun
from cloche.monitoring.service import monitor_row
from cloche.store.store import Store
from cloche.store.tables import AlertRow, MonitorRow, MonitorRunRow

BATCH_PREFIX = "batch:"  # the keys of a batch job's run, e.g. batch:skew:spend


def apply(
    store: Store, run: MonitorRun, config: MonitorConfig, settings: Settings, *, now: datetime
) -> MonitorRun:
    """Update the monitor's alerts from ``run``, notify, and return the run with a summary."""
    policy = AlertPolicy(config.min_breaches, config.of_runs, config.cooldown_s)
    details = {key: _breach(key, run.results) for key in run.breaches}
    batch_job = run.results.get("batch_job")
    with store.transaction() as session:
        monitor = monitor_row(session, run.monitor)
        open_rows = _open_alerts(session, monitor.id, batch=batch_job is not None)
        decision = decide(
            policy,
            breached=run.breaches,
            previous=_previous(session, monitor.id, run, open_rows, config.of_runs),
            open_alerts=[_as_open(r) for r in open_rows.values()],
            now=now,
        )
        affected = _write_alerts(session, monitor, open_rows, decision, details, now)
        endpoint = monitor.endpoint
    message = build_message(
        decision,
        details,
        monitor=run.monitor,
        endpoint=endpoint if batch_job is None else f"{endpoint}, batch job {batch_job}",
        run_at=now,
        window_start=run.window_start,
        window_end=run.window_end,
    )
    opened = {key: affected[key] for key in decision.open}
    deliveries = _send(store, message, config, settings, opened)
    return _record(store, run, decision, message, deliveries, affected, now)


def _breach(key: str, results: dict[str, Any]) -> Breach:
    """The breach's value and threshold; a batch key is looked up without its prefix."""
    inner = key.removeprefix(BATCH_PREFIX)
    found = breach_from_results(inner, results)
    return found if inner == key else dataclasses.replace(found, key=key)


def _open_alerts(session: Session, monitor_id: str, *, batch: bool) -> dict[str, AlertRow]:
    """The open alerts of one stream: the batch jobs' or the endpoint's."""
    of_batch = AlertRow.key.startswith(BATCH_PREFIX, autoescape=True)
    rows = session.scalars(
        select(AlertRow).where(
            AlertRow.monitor_id == monitor_id,
            AlertRow.state == "open",
            of_batch if batch else ~of_batch,
        )
    )
    return {row.key: row for row in rows}


def _as_open(row: AlertRow) -> OpenAlert:
    return OpenAlert(
        key=row.key,
        opened_at=row.opened_at,
        last_notified_at=row.last_notified_at,
        acked=row.acked_at is not None,
    )


def _previous(
    session: Session,
    monitor_id: str,
    run: MonitorRun,
    open_rows: dict[str, AlertRow],
    of_runs: int,
) -> dict[str, list[bool]]:
    # Runs of the same kind only: a batch run's results name its job, an endpoint run's none.
    job = MonitorRunRow.results["batch_job"].as_string()
    earlier = session.scalars(
        select(MonitorRunRow.breaches)
        .where(
            MonitorRunRow.monitor_id == monitor_id,
            MonitorRunRow.id < run.id,
            MonitorRunRow.status.in_(("ok", "breached")),
            job.is_not(None) if "batch_job" in run.results else job.is_(None),
        )
        .order_by(MonitorRunRow.id.desc())
        .limit(max(of_runs - 1, 0))
    ).all()
    history = [set(b or []) for b in reversed(earlier)]
    return previous_from_runs(history, set(run.breaches) | open_rows.keys(), of_runs=of_runs)


def _write_alerts(
    session: Session,
    monitor: MonitorRow,
    open_rows: dict[str, AlertRow],
    decision: Decision,
    details: dict[str, Breach],
    now: datetime,
) -> dict[str, int]:
    """Open, update and resolve rows; the ids of those the digest is about, by key."""
    for key in decision.open:
        breach = details.get(key) or Breach(key)
        open_rows[key] = AlertRow(
            monitor_id=monitor.id,
            key=key,
            state="open",
            opened_at=now,
            value=breach.value,
            threshold=breach.threshold,
            details=breach.to_dict(),
            deliveries=[],
        )
        session.add(open_rows[key])
    for key in (*decision.renotify, *decision.quiet):
        if key in details:
            open_rows[key].value = details[key].value
    for key in decision.resolve:
        open_rows[key].state, open_rows[key].resolved_at = "resolved", now
    session.flush()
    about = (*decision.open, *decision.renotify, *decision.resolve)
    return {key: open_rows[key].id for key in about}


def _send(
    store: Store,
    message: AlertMessage | None,
    config: MonitorConfig,
    settings: Settings,
    opened: dict[str, int],
) -> list[Any]:
    """One delivery per channel, in the channels' order; a ``pipeline:`` channel queues a run
    for the alerts just ``opened`` (key -> id)."""
    if message is None or not config.alerts:
        return []
    channels = [parse_channel(spec) for spec in config.alerts]
    sent = deliver_all(
        [c for c in channels if c.kind != "pipeline"],
        message,
        settings=settings.alerts,
        egress=settings.egress.policy(),
    )
    return [
        pipeline_channel.deliver(store, c, message, opened) if c.kind == "pipeline" else sent.pop(0)
        for c in channels
    ]


def _record(
    store: Store,
    run: MonitorRun,
    decision: Decision,
    message: AlertMessage | None,
    deliveries: list[Any],
    affected: dict[str, int],
    now: datetime,
) -> MonitorRun:
    """Deliveries onto the alerts they were about; the summary onto the run."""
    sent = [d.to_dict() for d in deliveries]
    reached = not deliveries or any(d.ok for d in deliveries)
    summary = {
        "opened": list(decision.open),
        "renotified": list(decision.renotify),
        "resolved": list(decision.resolve),
        "pending": list(decision.pending),
        "deliveries": sent,
        "summary": _lines(message, sent),
    }
    with store.transaction() as session:
        for row in session.scalars(select(AlertRow).where(AlertRow.id.in_(affected.values()))):
            row.deliveries = [*(row.deliveries or []), *sent]
            if reached and row.key in decision.notified:
                row.last_notified_at = now
        stored = session.get(MonitorRunRow, run.id)
        assert stored is not None
        stored.results = {**(stored.results or {}), "alerts": summary}
    return run.model_copy(update={"results": {**run.results, "alerts": summary}})


def _lines(message: AlertMessage | None, sent: list[dict[str, Any]]) -> list[str]:
    if message is None:
        return []
    lines = [message.headline]
    lines += [
        f"  {d['channel']}: " + ("delivered" if d["ok"] else f"NOT delivered ({d['last_error']})")
        for d in sent
    ]
    return lines
