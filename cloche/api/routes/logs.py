"""The payload log of an endpoint: its recent requests, inputs, outputs and errors."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel

from cloche.api.deps import Reader, StoreDep
from cloche.api.routes import make_router
from cloche.logs import service as logs
from cloche.logs.service import LogStats, ShadowAgreement

router = make_router("", "logs")


class LogPage(BaseModel):
    endpoint: str
    rows: list[dict[str, Any]]
    stats: LogStats


@router.get("/logs/stats")
def log_stats(_: Reader, store: StoreDep) -> LogStats:
    """Rows logged, and rows that could not be logged (e.g. a full disk), across workers."""
    return logs.endpoint_log_stats(store)


@router.get("/endpoints/{name}/logs")
def read_logs(
    _: Reader,
    store: StoreDep,
    name: str,
    since: Annotated[str, Query(description="a duration (30m, 1h, 7d) or an ISO time")] = "1h",
    until: Annotated[str | None, Query(description="an ISO time; default now")] = None,
    limit: Annotated[int, Query(ge=1, le=logs.MAX_ROWS)] = 1000,
) -> LogPage:
    """The newest logged requests of an endpoint, oldest first."""
    table = logs.read_endpoint_log(store, endpoint=name, since=since, until=until, limit=limit)
    return LogPage(endpoint=name, rows=logs.rows(table), stats=logs.endpoint_log_stats(store))


@router.get("/endpoints/{name}/shadow-agreement")
def shadow_agreement(
    _: Reader,
    store: StoreDep,
    name: str,
    since: Annotated[str, Query(description="a duration (30m, 1h, 7d) or an ISO time")] = "24h",
) -> list[ShadowAgreement]:
    """How often each shadow deployment agreed with the live answers."""
    return logs.shadow_agreement(store, endpoint=name, since=since)
