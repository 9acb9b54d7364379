"""The ``pipeline:NAME`` alert channel: an alert queues a run of registered pipeline NAME.

A monitor run's message that opens alerts queues one run, keyed on the lowest id among the
alerts it opened (its trigger is ``alert:ID``), so a re-notification, a resolution, or the same
message delivered again queues nothing more. The run gets the alert as parameters, only those
the pipeline declares: ``alert_id``, ``monitor``, ``endpoint``, ``breached`` (the keys) and
``values`` (key -> measured value). A pipeline that is gone or refuses the parameters is a
failed delivery, recorded on the alerts like any other channel's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from cloche.alerts.channels import Channel, parse_channel
from cloche.alerts.delivery import Delivery
from cloche.alerts.digest import AlertMessage
from cloche.errors import ClocheError, InvalidInput, PipelineNotFound
from cloche.pipelines import registered
from cloche.pipelines.graph import PipelineGraph
from cloche.store.store import Store
from cloche.store.tables import PipelineRunRow

log = logging.getLogger("cloche.alerts")


def check_registered(store: Store, specs: Iterable[str]) -> None:
    """Refuse a ``pipeline:NAME`` channel naming no registered pipeline."""
    for channel in (parse_channel(spec) for spec in specs):
        if channel.kind != "pipeline":
            continue
        try:
            registered.newest_graph(store, channel.pipeline or "")
        except PipelineNotFound:
            raise InvalidInput(
                f"alert channel {channel} names no registered pipeline",
                hint=f"register it first: cloche pipelines register FILE.py (defining "
                f"{channel.pipeline!r}), or fix the name",
            ) from None


def alert_params(message: AlertMessage, alert_id: int) -> dict[str, Any]:
    """Everything an alert offers a pipeline, by parameter name."""
    return {
        "alert_id": alert_id,
        "monitor": message.monitor,
        "endpoint": message.endpoint,
        "breached": [b.key for b in message.breaches],
        "values": {b.key: b.value for b in message.breaches},
    }


def fit_params(graph: PipelineGraph, offered: Mapping[str, Any]) -> dict[str, Any]:
    """The offered values the pipeline declares; as text where it takes a str."""
    params = {}
    for name, spec in graph.params.items():
        if name in offered:
            value = offered[name]
            params[name] = _text(value) if spec.type == "str" else value
    return params


def deliver(
    store: Store, channel: Channel, message: AlertMessage, opened: Mapping[str, int]
) -> Delivery:
    """Queue the pipeline's run for the alerts ``message`` opened (key -> alert id); never
    raises."""
    spec = str(channel)
    if not opened:  # a reminder or a resolution: the alert's run was queued when it opened
        return Delivery(spec, ok=True, attempts=0, delivered_at=_now())
    alert_id = min(opened.values())
    trigger = f"alert:{alert_id}"
    name = channel.pipeline or ""
    try:
        if _already_queued(store, name, trigger):
            return Delivery(spec, ok=True, attempts=0, delivered_at=_now())
        graph = registered.newest_graph(store, name)
        params = fit_params(graph, alert_params(message, alert_id))
        registered.queue_run(
            store, name, params, actor=f"monitor:{message.monitor}", trigger=trigger
        )
    except ClocheError as exc:
        reason = f"{exc.message}; {exc.hint}" if exc.hint else exc.message
        return Delivery(spec, ok=False, attempts=1, last_error=reason)
    except Exception as exc:  # the store is away, a bug: recorded, the monitor run goes on
        log.exception("alert to %s failed", spec)
        return Delivery(spec, ok=False, attempts=1, last_error=f"unexpected error: {exc!r}")
    return Delivery(spec, ok=True, attempts=1, delivered_at=_now())


def _already_queued(store: Store, name: str, trigger: str) -> bool:
    with store.transaction() as session:
        found = session.scalar(
            select(PipelineRunRow.id)
            .where(PipelineRunRow.pipeline == name, PipelineRunRow.trigger == trigger)
            .limit(1)
        )
    return found is not None


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return json.dumps(value) if isinstance(value, dict) else str(value)


def _now() -> datetime:
    return datetime.now(UTC)
