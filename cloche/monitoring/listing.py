"""Pages of monitors and alerts for the console, REST and SDK (see store/paging.py).

Two statements each: the page and the count (an alert's monitor name comes in the same join).
"""

from __future__ import annotations

from sqlalchemy import select

from cloche.monitoring.entities import Alert, Monitor
from cloche.monitoring.service import alert_entity, entity, monitor_row
from cloche.store import paging
from cloche.store.paging import AnySelect, Page, PageRequest
from cloche.store.store import Store
from cloche.store.tables import AlertRow, MonitorRow

MONITORS = paging.Listing(
    name="monitors",
    sorts={
        "name": MonitorRow.name,
        "created": MonitorRow.created_at,
        "next_run": MonitorRow.next_run_at,
    },
    default="name",
    default_order="asc",
    tiebreak=MonitorRow.id,
)
ALERTS = paging.Listing(
    name="alerts",
    sorts={"opened": AlertRow.opened_at, "monitor": MonitorRow.name, "state": AlertRow.state},
    default="opened",
    default_order="desc",
    tiebreak=AlertRow.id,
)


def page_monitors(
    store: Store, request: PageRequest, *, endpoint: str | None = None
) -> Page[Monitor]:
    """Monitors by name by default; ``q`` searches the monitor's and its endpoint's names."""
    query = select(MonitorRow)
    if endpoint is not None:
        query = query.where(MonitorRow.endpoint == endpoint)
    query = paging.search(query, request, MonitorRow.name, MonitorRow.endpoint)
    with store.transaction() as session:
        return paging.fetch(
            session, query, request, MONITORS, lambda rows: [entity(r[0]) for r in rows]
        )


def page_alerts(
    store: Store,
    request: PageRequest,
    *,
    state: str | None = None,
    monitor: str | None = None,
) -> Page[Alert]:
    """Alerts, newest first by default, open or resolved, of one monitor or all; ``q``
    searches the breached key (e.g. ``skew:tenure``) and the monitor's name."""
    on_monitor = MonitorRow.id == AlertRow.monitor_id
    query: AnySelect = select(AlertRow, MonitorRow.name).join(MonitorRow, on_monitor)
    if paging.one_of("alert state", state, ("open", "resolved")) is not None:
        query = query.where(AlertRow.state == state)
    query = paging.search(query, request, AlertRow.key, MonitorRow.name)
    with store.transaction() as session:
        if monitor is not None:
            query = query.where(AlertRow.monitor_id == monitor_row(session, monitor).id)
        return paging.fetch(
            session, query, request, ALERTS, lambda rows: [alert_entity(a, n) for a, n in rows]
        )
