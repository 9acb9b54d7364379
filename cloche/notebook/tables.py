"""What the SDK returns about models, endpoints, monitors and alerts, as HTML tables for a
notebook: every value escaped, no script, no style sheet or font fetched."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from html import escape
from typing import Any

from pydantic import BaseModel

from cloche.endpoints.entities import Endpoint
from cloche.monitoring.entities import Alert, Monitor, MonitorRun
from cloche.registry.entities import ModelDetail, ModelSummary, ModelVersion

Column = tuple[str, Callable[[Any], object]]
# Long values (a run's results, an alert's details) are cut here: the object holds them whole.
MAX_CELL = 120


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def _pairs(mapping: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in mapping.items())


COLUMNS: dict[type[BaseModel], list[Column]] = {
    ModelSummary: [
        ("name", lambda m: m.name),
        ("latest", lambda m: m.latest_version),
        ("versions", lambda m: m.version_count),
        ("framework", lambda m: m.framework),
        ("aliases", lambda m: _pairs(m.aliases)),
        ("updated", lambda m: _when(m.updated_at)),
    ],
    ModelVersion: [
        ("version", lambda v: v.ref),
        ("framework", lambda v: v.framework),
        ("aliases", lambda v: ", ".join(v.aliases)),
        ("size (bytes)", lambda v: v.size_bytes),
        ("metrics", lambda v: _pairs(v.metrics)),
        ("created", lambda v: _when(v.created_at)),
        ("by", lambda v: v.created_by),
    ],
    Endpoint: [
        ("name", lambda e: e.name),
        ("traffic", lambda e: ", ".join(f"{r} {p}%" for r, p in e.traffic().items())),
        ("shadows", lambda e: ", ".join(d.ref for d in e.deployments if d.shadow)),
        ("log sample", lambda e: e.log_sample_rate),
        ("updated", lambda e: _when(e.updated_at)),
    ],
    Monitor: [
        ("name", lambda m: m.name),
        ("endpoint", lambda m: m.endpoint),
        ("enabled", lambda m: "yes" if m.enabled else "paused"),
        ("every (s)", lambda m: m.config.every_s),
        ("last run", lambda m: _when(m.last_run_at)),
        ("next run", lambda m: _when(m.next_run_at)),
    ],
    MonitorRun: [
        ("run", lambda r: r.id),
        ("monitor", lambda r: r.monitor),
        ("started", lambda r: _when(r.started_at)),
        ("window", lambda r: f"{_when(r.window_start)} to {_when(r.window_end)}"),
        ("status", lambda r: r.status),
        ("rows", lambda r: r.rows),
        ("breaches", lambda r: ", ".join(r.breaches)),
        ("message", lambda r: r.message),
    ],
    Alert: [
        ("alert", lambda a: a.id),
        ("monitor", lambda a: a.monitor),
        ("key", lambda a: a.key),
        ("state", lambda a: a.state + (" (acked)" if a.acked_at else "")),
        ("value", lambda a: a.value),
        ("threshold", lambda a: a.threshold),
        ("opened", lambda a: _when(a.opened_at)),
        ("resolved", lambda a: _when(a.resolved_at)),
    ],
}
TITLES = {
    ModelSummary: "Models",
    ModelVersion: "Model versions",
    Endpoint: "Endpoints",
    Monitor: "Monitors",
    MonitorRun: "Monitor runs",
    Alert: "Alerts",
}


def columns_for(item: object) -> list[Column] | None:
    """The columns of ``item``'s type (a ModelDetail is shown as a ModelSummary), or None."""
    for kind in type(item).__mro__:
        if kind in COLUMNS:
            return COLUMNS[kind]  # type: ignore[index]
    return None


def table_html(items: Sequence[object], title: str = "") -> str | None:
    """``items`` (all of one known type) as an HTML table; None for anything else."""
    if not items:
        return None
    columns = columns_for(items[0])
    if columns is None or any(columns_for(i) is not columns for i in items):
        return None
    kind = next(k for k in type(items[0]).__mro__ if k in COLUMNS)
    head = "".join(f"<th>{escape(name)}</th>" for name, _ in columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{_cell(get(item))}</td>" for _, get in columns) + "</tr>"
        for item in items
    )
    caption = escape(title or f"{TITLES[kind]} ({len(items)})")  # type: ignore[index]
    return (
        f'<table class="cloche-table"><caption style="text-align:left"><b>{caption}</b></caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    )


def detail_html(model: ModelDetail) -> str | None:
    """A model with its versions: its summary row, then a row per version."""
    summary = table_html([model], title=f"Model {model.name}")
    versions = table_html(model.versions)
    return (summary or "") + (versions or "")


def _cell(value: object) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else _plain(value)
    if len(text) > MAX_CELL:
        text = text[: MAX_CELL - 1] + "…"
    return escape(text)


def _plain(value: object) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
