"""Monitors and alerts in the SDK, both transports (the REST twin mirrors the service)."""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from cloche.monitoring.entities import (
    Alert,
    Baseline,
    FeedbackResult,
    Monitor,
    MonitorConfig,
    MonitorRun,
)

if TYPE_CHECKING:
    from cloche.client._http import HttpTransport
    from cloche.client._local import LocalTransport


def _config(
    config: MonitorConfig | dict[str, Any] | None, options: dict[str, Any]
) -> MonitorConfig:
    base = config.model_dump() if isinstance(config, MonitorConfig) else dict(config or {})
    return MonitorConfig.model_validate(base | options)


class LocalMonitors:
    def __init__(self, transport: LocalTransport) -> None:
        self._t = transport

    def create(
        self,
        endpoint: str,
        *,
        name: str | None = None,
        config: MonitorConfig | dict[str, Any] | None = None,
        **options: Any,
    ) -> Monitor:
        """Watch ``endpoint``; options are MonitorConfig fields (every_s, skew_threshold, ...)."""
        from cloche.monitoring import service

        return service.create_monitor(
            self._t.store,
            endpoint=endpoint,
            name=name,
            config=_config(config, options),
            actor=self._t.actor,
            egress=self._t.settings.egress.policy(),
        )

    def list(self, *, endpoint: str | None = None) -> builtins.list[Monitor]:
        from cloche.monitoring import service

        return service.list_monitors(self._t.store, endpoint=endpoint)

    def get(self, name: str) -> Monitor:
        from cloche.monitoring import service

        return service.get_monitor(self._t.store, name)

    def runs(self, name: str, *, limit: int = 20) -> builtins.list[MonitorRun]:
        from cloche.monitoring import service

        return service.list_runs(self._t.store, name, limit=limit)

    def run(self, name: str, *, batch_job: str | None = None) -> MonitorRun:
        from cloche.monitoring import runs

        return runs.run_monitor(self._t.store, name, settings=self._t.settings, batch_job=batch_job)

    def pause(self, name: str) -> Monitor:
        from cloche.monitoring import service

        return service.set_enabled(self._t.store, name, False, actor=self._t.actor)

    def resume(self, name: str) -> Monitor:
        from cloche.monitoring import service

        return service.set_enabled(self._t.store, name, True, actor=self._t.actor)

    def delete(self, name: str) -> None:
        from cloche.monitoring import service

        service.delete_monitor(self._t.store, name, actor=self._t.actor)

    def feedback(self, endpoint: str, labels: Sequence[Mapping[str, Any]]) -> FeedbackResult:
        from cloche.monitoring.feedback import record_feedback

        return record_feedback(
            self._t.store, endpoint, [dict(item) for item in labels], actor=self._t.actor
        )

    def create_baseline(self, ref: str, data: str | Path) -> Baseline:
        """Attach (or replace) the baseline dataset of the version ``ref`` names (Parquet,
        CSV or JSON lines) and profile it now, as its monitors compare with it."""
        from cloche.monitoring.baselines import create_baseline

        found = create_baseline(self._t.store, ref=ref, path=Path(data), actor=self._t.actor)
        return Baseline.model_validate(found)


class LocalAlerts:
    def __init__(self, transport: LocalTransport) -> None:
        self._t = transport

    def list(
        self, *, state: str | None = None, monitor: str | None = None, limit: int = 100
    ) -> builtins.list[Alert]:
        from cloche.monitoring import service

        return service.list_alerts(self._t.store, state=state, monitor=monitor, limit=limit)

    def get(self, alert_id: int) -> Alert:
        from cloche.monitoring import service

        return service.get_alert(self._t.store, alert_id)

    def ack(self, alert_id: int) -> Alert:
        from cloche.monitoring import service

        return service.ack_alert(self._t.store, alert_id, actor=self._t.actor)


def _monitor_path(name: str = "", *rest: str) -> str:
    from cloche.client._http import API

    parts = [quote(p, safe="") for p in (name, *rest) if p]
    return f"{API}/monitors" + "".join("/" + p for p in parts)


class HttpMonitors:
    def __init__(self, transport: HttpTransport) -> None:
        self._t = transport

    def _monitor(self, method: str, path: str, **kwargs: Any) -> Monitor:
        return Monitor.model_validate(self._t.request(method, path, **kwargs).json())

    def create(
        self,
        endpoint: str,
        *,
        name: str | None = None,
        config: MonitorConfig | dict[str, Any] | None = None,
        **options: Any,
    ) -> Monitor:
        body = {
            "endpoint": endpoint,
            "name": name,
            "config": _config(config, options).model_dump(mode="json"),
        }
        return self._monitor("POST", _monitor_path(), json=body)

    def list(self, *, endpoint: str | None = None) -> builtins.list[Monitor]:
        params = {"endpoint": endpoint} if endpoint else {}
        found = self._t.request("GET", _monitor_path(), params=params).json()
        return [Monitor.model_validate(m) for m in found]

    def get(self, name: str) -> Monitor:
        return self._monitor("GET", _monitor_path(name))

    def runs(self, name: str, *, limit: int = 20) -> builtins.list[MonitorRun]:
        found = self._t.request("GET", _monitor_path(name, "runs"), params={"limit": limit})
        return [MonitorRun.model_validate(r) for r in found.json()]

    def run(self, name: str, *, batch_job: str | None = None) -> MonitorRun:
        params = {"batch_job": batch_job} if batch_job is not None else {}
        reply = self._t.request("POST", _monitor_path(name, "run"), params=params)
        return MonitorRun.model_validate(reply.json())

    def pause(self, name: str) -> Monitor:
        return self._monitor("POST", _monitor_path(name, "pause"))

    def resume(self, name: str) -> Monitor:
        return self._monitor("POST", _monitor_path(name, "resume"))

    def delete(self, name: str) -> None:
        self._t.request("DELETE", _monitor_path(name))

    def feedback(self, endpoint: str, labels: Sequence[Mapping[str, Any]]) -> FeedbackResult:
        from cloche.client._http import API

        body = {"labels": [dict(item) for item in labels]}
        path = f"{API}/endpoints/{quote(endpoint, safe='')}/feedback"
        return FeedbackResult.model_validate(self._t.request("POST", path, json=body).json())

    def create_baseline(self, ref: str, data: str | Path) -> Baseline:
        from cloche.client import _files
        from cloche.client._http import API
        from cloche.registry.refs import parse_ref

        model = str(parse_ref(ref))  # a bad reference fails here, before the upload
        with _files.open_dataset(data) as fh:
            reply = self._t.request(
                "POST",
                f"{API}/baselines",
                data={"model": model},
                files={"file": (Path(data).name, fh)},
            )
        return Baseline.model_validate(reply.json())


class HttpAlerts:
    def __init__(self, transport: HttpTransport) -> None:
        self._t = transport

    def list(
        self, *, state: str | None = None, monitor: str | None = None, limit: int = 100
    ) -> builtins.list[Alert]:
        from cloche.client._http import API

        params: dict[str, Any] = {"limit": limit}
        params |= {k: v for k, v in (("state", state), ("monitor", monitor)) if v}
        found = self._t.request("GET", f"{API}/alerts", params=params).json()
        return [Alert.model_validate(a) for a in found]

    def get(self, alert_id: int) -> Alert:
        from cloche.client._http import API

        return Alert.model_validate(self._t.request("GET", f"{API}/alerts/{int(alert_id)}").json())

    def ack(self, alert_id: int) -> Alert:
        from cloche.client._http import API

        reply = self._t.request("POST", f"{API}/alerts/{int(alert_id)}/ack")
        return Alert.model_validate(reply.json())
