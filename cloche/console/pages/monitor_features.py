"""A monitored feature: its skew and drift over time against their thresholds (uPlot, drawn by
static/monitors.js from the JSON in a data attribute, and a table of the same values), and the
baseline against a run's window as a server-side SVG histogram."""

from __future__ import annotations

import asyncio
from typing import Any

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloche.auth.roles import Permission, authorize
from cloche.errors import BadRequest, FeatureNotFound
from cloche.monitoring import history
from cloche.monitoring.history import FeatureHistogram, FeatureHistory

from ..charts.histogram import Bins, numeric_labels, render
from ..render import SESSION_KEY, page

DEFAULT_POINTS = 200


def _number(raw: str | None, name: str) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise BadRequest(f"{name} {raw!r} is not a whole number", hint=f"e.g. ?{name}=5")
    return int(raw)


def series(found: FeatureHistory) -> dict[str, list[Any]]:
    """Columns for uPlot: window ends (epoch seconds), each check's value and threshold."""
    out: dict[str, list[Any]] = {"t": [int(p.window_end.timestamp()) for p in found.points]}
    for check in ("skew", "drift"):
        distances = [getattr(p, check) for p in found.points]
        out[check] = [d.value if d else None for d in distances]
        out[f"{check}_threshold"] = [d.threshold if d else None for d in distances]
    return out


def histogram_svg(found: FeatureHistogram) -> Markup:
    labels = found.categories if found.kind == "categorical" else None
    bins = Bins(
        labels=labels or numeric_labels(found.edges or []),
        baseline=found.baseline,
        window=found.window,
    )
    title = f"{found.feature}: baseline against the window of run {found.run}"
    return render(bins, title=title, ident=f"hist-{found.run}")


def _read(
    request: Request, name: str, feature: str, limit: int, run: int | None
) -> tuple[FeatureHistory, FeatureHistogram | None, FeatureNotFound | None]:
    store = request.app.state.store
    found = history.feature_history(store, name, feature, limit=limit)
    try:
        return found, history.feature_histogram(store, name, feature, run=run), None
    except FeatureNotFound as missing:  # e.g. no baseline: the distances alone still tell
        return found, None, missing


async def show_feature(request: Request) -> Response:
    authorize(request.scope[SESSION_KEY].principal, Permission.READ)
    name, feature = request.path_params["name"], request.path_params["feature"]
    limit = _number(request.query_params.get("limit"), "limit")
    run = _number(request.query_params.get("run"), "run")
    found, histogram, missing = await asyncio.to_thread(
        _read, request, name, feature, DEFAULT_POINTS if limit is None else limit, run
    )
    context = {
        "feature": found,
        "series": series(found),
        "histogram": histogram,
        "histogram_svg": histogram_svg(histogram) if histogram else None,
        "histogram_missing": missing,
    }
    return page(request, "monitor_feature.html", "_monitor_feature_main.html", context)


ROUTES = [
    Route("/monitors/{name}/features/{feature}", show_feature, methods=["GET"]),
]
