"""Alerts: what monitors raised, and acknowledging them.

The interface (`AlertsAPI`) and its two forms side by side: in-process on
CLOCHE_HOME's store, and over a server's REST API.
"""

from __future__ import annotations

import builtins
from typing import Protocol

from cloche.alerts.delivery import Delivery
from cloche.client._http import API, HttpTransport
from cloche.client._local import LocalTransport
from cloche.client._paging import collect, http_page
from cloche.monitoring.entities import Alert
from cloche.store.paging import Order


class AlertsAPI(Protocol):
    def list(
        self,
        *,
        state: str | None = None,
        monitor: str | None = None,
        q: str | None = None,
        sort: str | None = None,
        order: Order | None = None,
        limit: int | None = 100,
        offset: int = 0,
    ) -> builtins.list[Alert]: ...

    def get(self, alert_id: int) -> Alert: ...

    def ack(self, alert_id: int) -> Alert:
        """Acknowledge: the alert stays open while breached but is not notified again."""
        ...

    def send(
        self, channels: builtins.list[str], title: str, text: str = ""
    ) -> builtins.list[Delivery]:
        """Send a message to alert channels (``webhook:URL``, ``email:ADDR``, ``log``) now;
        what happened on each. A channel that is down is reported, not raised."""
        ...


class LocalAlerts:
    def __init__(self, transport: LocalTransport) -> None:
        self._t = transport

    def list(
        self,
        *,
        state: str | None = None,
        monitor: str | None = None,
        q: str | None = None,
        sort: str | None = None,
        order: Order | None = None,
        limit: int | None = 100,
        offset: int = 0,
    ) -> builtins.list[Alert]:
        from cloche.monitoring import listing

        return collect(
            lambda page: listing.page_alerts(self._t.store, page, state=state, monitor=monitor),
            q=q,
            sort=sort,
            order=order,
            limit=limit,
            offset=offset,
        )

    def get(self, alert_id: int) -> Alert:
        from cloche.monitoring import service

        return service.get_alert(self._t.store, alert_id)

    def ack(self, alert_id: int) -> Alert:
        from cloche.monitoring import service

        return service.ack_alert(self._t.store, alert_id, actor=self._t.actor)

    def send(
        self, channels: builtins.list[str], title: str, text: str = ""
    ) -> builtins.list[Delivery]:
        from cloche.alerts.notices import send_notice

        return send_notice(
            self._t.store, self._t.settings, list(channels), title, text, actor=self._t.actor
        )


class HttpAlerts:
    def __init__(self, transport: HttpTransport) -> None:
        self._t = transport

    def list(
        self,
        *,
        state: str | None = None,
        monitor: str | None = None,
        q: str | None = None,
        sort: str | None = None,
        order: Order | None = None,
        limit: int | None = 100,
        offset: int = 0,
    ) -> builtins.list[Alert]:
        filters = [("state", state), ("monitor", monitor)]
        return collect(
            lambda page: http_page(self._t, f"{API}/alerts", page, Alert, filters),
            q=q,
            sort=sort,
            order=order,
            limit=limit,
            offset=offset,
        )

    def get(self, alert_id: int) -> Alert:

        return Alert.model_validate(self._t.request("GET", f"{API}/alerts/{int(alert_id)}").json())

    def ack(self, alert_id: int) -> Alert:

        reply = self._t.request("POST", f"{API}/alerts/{int(alert_id)}/ack")
        return Alert.model_validate(reply.json())

    def send(
        self, channels: builtins.list[str], title: str, text: str = ""
    ) -> builtins.list[Delivery]:
        body = {"channels": list(channels), "title": title, "text": text}
        reply = self._t.request("POST", f"{API}/alerts/send", json=body)
        return [Delivery.from_dict(d) for d in reply.json()]
