"""Monitors: drift, data quality and accuracy checks on an endpoint, their runs, and feedback.

The interface (`MonitorsAPI`) and its two forms side by side: in-process on
CLOCHE_HOME's store, and over a server's REST API.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from cloche.client import _files
from cloche.client._http import API, HttpTransport
from cloche.client._local import LocalTransport
from cloche.client._paging import collect, http_page
from cloche.monitoring.entities import (
    Baseline,
    FeedbackResult,
    Monitor,
    MonitorConfig,
    MonitorRun,
)
from cloche.monitoring.history import FeatureHistogram, FeatureHistory
from cloche.registry.refs import parse_ref
from cloche.store.paging import Order


class MonitorsAPI(Protocol):
    def create(
        self,
        endpoint: str,
        *,
        name: str | None = None,
        config: MonitorConfig | dict[str, Any] | None = None,
        **options: Any,
    ) -> Monitor:
        """Watch ``endpoint``; ``options`` are MonitorConfig fields (every_s, window_s,
        skew_threshold, drift_threshold, feature_thresholds, metric, alerts, cooldown_s, ...)."""
        ...

    def list(
        self,
        *,
        endpoint: str | None = None,
        q: str | None = None,
        sort: str | None = None,
        order: Order | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> builtins.list[Monitor]: ...

    def get(self, name: str) -> Monitor: ...

    def runs(self, name: str, *, limit: int = 20) -> builtins.list[MonitorRun]:
        """The monitor's runs, newest first, with each feature's value, threshold, verdict."""
        ...

    def feature_history(self, name: str, feature: str, *, limit: int = 200) -> FeatureHistory:
        """``feature``'s skew and drift in the last ``limit`` runs, with their thresholds."""
        ...

    def feature_histogram(
        self, name: str, feature: str, *, run: int | None = None
    ) -> FeatureHistogram:
        """``feature``'s baseline and window shares in run ``run`` (default: the latest)."""
        ...

    def run(self, name: str, *, batch_job: str | None = None) -> MonitorRun:
        """Run it now over the window that ends now; alerts included. With ``batch_job`` (an
        id or unique prefix), compare that finished batch job's inputs and predictions with
        its model version's baseline instead, under this monitor's thresholds and alerts."""
        ...

    def pause(self, name: str) -> Monitor: ...

    def resume(self, name: str) -> Monitor: ...

    def delete(self, name: str) -> None: ...

    def feedback(self, endpoint: str, labels: Sequence[Mapping[str, Any]]) -> FeedbackResult:
        """Ground-truth labels, ``[{"request_id": ..., "label": ...}]`` (at most 10,000), for
        requests ``endpoint`` answered; monitors grade the model with them. Ids not in the
        payload log of the last 30 days are returned in ``unknown_request_ids``, not stored;
        a second label for a request replaces the first."""
        ...

    def create_baseline(self, ref: str, data: str | Path) -> Baseline:
        """Attach (or replace) the baseline dataset of the version ``ref`` names (Parquet,
        CSV or JSON lines) and profile it now, as its monitors compare with it."""
        ...


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

    def list(
        self,
        *,
        endpoint: str | None = None,
        q: str | None = None,
        sort: str | None = None,
        order: Order | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> builtins.list[Monitor]:
        from cloche.monitoring import listing

        return collect(
            lambda page: listing.page_monitors(self._t.store, page, endpoint=endpoint),
            q=q,
            sort=sort,
            order=order,
            limit=limit,
            offset=offset,
        )

    def get(self, name: str) -> Monitor:
        from cloche.monitoring import service

        return service.get_monitor(self._t.store, name)

    def runs(self, name: str, *, limit: int = 20) -> builtins.list[MonitorRun]:
        from cloche.monitoring import service

        return service.list_runs(self._t.store, name, limit=limit)

    def feature_history(self, name: str, feature: str, *, limit: int = 200) -> FeatureHistory:
        from cloche.monitoring import history

        return history.feature_history(self._t.store, name, feature, limit=limit)

    def feature_histogram(
        self, name: str, feature: str, *, run: int | None = None
    ) -> FeatureHistogram:
        from cloche.monitoring import history

        return history.feature_histogram(self._t.store, name, feature, run=run)

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


def _monitor_path(name: str = "", *rest: str) -> str:

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

    def list(
        self,
        *,
        endpoint: str | None = None,
        q: str | None = None,
        sort: str | None = None,
        order: Order | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> builtins.list[Monitor]:
        filters = [("endpoint", endpoint)]
        return collect(
            lambda page: http_page(self._t, _monitor_path(), page, Monitor, filters),
            q=q,
            sort=sort,
            order=order,
            limit=limit,
            offset=offset,
        )

    def get(self, name: str) -> Monitor:
        return self._monitor("GET", _monitor_path(name))

    def runs(self, name: str, *, limit: int = 20) -> builtins.list[MonitorRun]:
        found = self._t.request("GET", _monitor_path(name, "runs"), params={"limit": limit})
        return [MonitorRun.model_validate(r) for r in found.json()]

    def feature_history(self, name: str, feature: str, *, limit: int = 200) -> FeatureHistory:
        path = _monitor_path(name, "features", feature, "history")
        found = self._t.request("GET", path, params={"limit": limit})
        return FeatureHistory.model_validate(found.json())

    def feature_histogram(
        self, name: str, feature: str, *, run: int | None = None
    ) -> FeatureHistogram:
        path = _monitor_path(name, "features", feature, "histogram")
        params = {"run": run} if run is not None else {}
        found = self._t.request("GET", path, params=params)
        return FeatureHistogram.model_validate(found.json())

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

        body = {"labels": [dict(item) for item in labels]}
        path = f"{API}/endpoints/{quote(endpoint, safe='')}/feedback"
        return FeedbackResult.model_validate(self._t.request("POST", path, json=body).json())

    def create_baseline(self, ref: str, data: str | Path) -> Baseline:
        from cloche.client._http import API

        model = str(parse_ref(ref))  # a bad reference fails here, before the upload
        with _files.open_dataset(data) as fh:
            reply = self._t.request(
                "POST",
                f"{API}/baselines",
                data={"model": model},
                files={"file": (Path(data).name, fh)},
            )
        return Baseline.model_validate(reply.json())
