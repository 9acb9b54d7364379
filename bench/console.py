"""The console's listings at platform scale: time and SQL statements per page.

Seeds a store to issue 18's scale (1,000 models, 200 endpoints, 10,000 batch jobs, 10,000
pipeline runs, and monitors, alerts, audit entries and tokens) with bulk INSERTs into the
store's tables (bench/_seed.py says why that is honest), then, for each listing, times the
first page, a search and a deep page (the last one) through the service layer and counts the
SQL statements each sends. The budget is 150 ms per page render, HTML included.

    .venv/bin/python bench/console.py [--repeat 5] [--home /tmp/seeded]
    .venv/bin/python bench/console.py --postgres postgresql://postgres@127.0.0.1:5432/bench

Console pages (issue 18) join the table by adding to ``PAGES`` a path of the console; each is
fetched from the ASGI app in-process (no network), timed and its statements counted alike.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from _seed import ISSUE_SCALE, seed
from sqlalchemy import Engine, event

from cloche import audit
from cloche.auth import tokens
from cloche.batch.listing import page_jobs
from cloche.config import Settings
from cloche.endpoints.service import page_endpoints
from cloche.monitoring.listing import page_alerts, page_monitors
from cloche.pipelines.records import page_runs
from cloche.registry.listing import page_models
from cloche.store.paging import Page, PageRequest
from cloche.store.store import Store

BUDGET_MS = 150.0
Lister = Callable[[Store, PageRequest], Page[Any]]

# name -> (list function, a search that matches some rows). Each is timed on its first page,
# with the search, and on its last page (the deepest OFFSET).
LISTINGS: dict[str, tuple[Lister, str]] = {
    "models": (page_models, "model-009"),
    "endpoints": (page_endpoints, "endpoint-01"),
    "batch jobs": (page_jobs, "model-0042"),
    "pipeline runs": (page_runs, "rollout"),
    "runs waiting": (lambda s, r: page_runs(s, r, state="waiting"), "promote"),
    "monitors": (page_monitors, "watch-001"),
    "alerts (open)": (lambda s, r: page_alerts(s, r, state="open"), "skew:f1"),
    "audit": (audit.page_audit, "model-001"),
    "tokens": (tokens.page_tokens, "ci-1"),
}
# Console pages: path -> a short label, fetched from the ASGI app in-process with a session.
# Every kind of page, and the sections htmx loads into them (charts' data, payload log, heat
# table and histograms). The named records have a history (bench/_seed.py): model-00001's
# versions, endpoint-0001's day of traffic, watch-00001's month of runs, and runs 0-2 (the
# 27-step nightly-score done, retrain waiting for approval, continuous-rollout under way).
RUN = "/console/runs/pr_{:012x}"
PAGES: dict[str, str] = {
    "/console/": "overview",
    "/console/models": "models",
    "/console/models?q=model-009&sort=-updated": "models search",
    "/console/models?page=40": "models page 40",
    "/console/models/model-00001": "model",
    "/console/endpoints": "endpoints",
    "/console/endpoints?page=8": "endpoints page 8",
    "/console/endpoints/endpoint-0001": "endpoint",
    "/console/endpoints/endpoint-0001/traffic?window=1h": "endpoint charts 1h",
    "/console/endpoints/endpoint-0001/traffic?window=1d": "endpoint charts 1d",
    "/console/endpoints/endpoint-0001/logs": "endpoint payload log",
    "/console/batch": "batch jobs",
    "/console/batch?state=failed&q=model-0042": "batch filtered",
    "/console/batch?page=400": "batch page 400",
    f"/console/batch/bj_{1:012x}": "batch job",
    "/console/batch/schedules": "batch schedules",
    "/console/monitors": "monitors",
    "/console/monitors/watch-00001": "monitor",
    "/console/monitors/watch-00001/features/f1": "monitor feature",
    "/console/alerts": "alerts",
    "/console/alerts?state=all&page=20": "alerts page 20",
    "/console/pipelines": "pipelines",
    "/console/pipelines?q=rollout&sort=-updated": "pipelines search",
    "/console/pipelines/nightly-score": "pipeline",
    "/console/pipelines/retrain/runs": "pipeline runs",
    "/console/pipelines/retrain/versions": "pipeline versions",
    "/console/runs": "runs",
    "/console/runs?state=waiting": "runs waiting",
    "/console/runs?q=rollout&sort=state": "runs search",
    "/console/runs?page=400": "runs page 400",
    RUN.format(0): "run (27 steps)",
    RUN.format(1): "run waiting",
    RUN.format(2): "run running",
    RUN.format(1) + "/steps/train[2]": "run step",
    "/console/tokens": "tokens",
    "/console/audit": "audit",
    "/console/audit?actor=local&page=40": "audit page 40",
}


class StatementCounter:
    """Counts the statements an engine sends (the no-N+1 check), through SQLAlchemy's events."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *_: Any) -> None:
        self.count += 1

    @contextmanager
    def counting(self) -> Iterator[list[int]]:
        start, box = self.count, [0]
        yield box
        box[0] = self.count - start


def timed(repeat: int, call: Callable[[], object]) -> float:
    """The median of ``repeat`` calls in ms, after one warm-up call."""
    call()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def bench_listings(store: Store, counter: StatementCounter, repeat: int) -> list[tuple[Any, ...]]:
    rows = []
    for name, (lister, search) in LISTINGS.items():
        total = lister(store, PageRequest()).total
        last = max(0, (total - 1) // 50 * 50)
        for case, request in (
            ("first page", PageRequest()),
            (f"q={search}", PageRequest(q=search)),
            (f"offset {last}", PageRequest(offset=last)),
        ):
            with counter.counting() as statements:
                page = lister(store, request)
            ms = timed(repeat, lambda lister=lister, request=request: lister(store, request))
            rows.append((name, case, len(page.items), page.total, ms, statements[0]))
    return rows


def bench_pages(
    settings: Settings, store: Store, counter: StatementCounter, repeat: int
) -> list[tuple[Any, ...]]:
    """Each console page of ``PAGES`` as a signed-in admin's browser gets it, in-process."""
    import httpx

    from cloche.api.app import create_app
    from cloche.auth import sessions
    from cloche.auth.local_token import ensure_local_token, require_local_token
    from cloche.console.app import with_console
    from cloche.console.guard import SESSION_COOKIE

    ensure_local_token(store)
    lifetimes = sessions.Lifetimes(idle=timedelta(hours=1), lifetime=timedelta(hours=1))
    session = sessions.sign_in(store, require_local_token(store.home), lifetimes=lifetimes)
    app = with_console(create_app(settings, store=store), settings, store)

    async def run() -> list[tuple[Any, ...]]:
        transport = httpx.ASGITransport(app=app)
        cookies = {SESSION_COOKIE: session.session_id}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1", cookies=cookies
        ) as http:
            out = []
            for path, label in PAGES.items():
                with counter.counting() as statements:
                    (await http.get(path)).raise_for_status()
                samples = []
                for _ in range(repeat):
                    start = time.perf_counter()
                    await http.get(path)
                    samples.append((time.perf_counter() - start) * 1000)
                out.append((label, path, "", "", statistics.median(samples), statements[0]))
            return out

    return asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", metavar="URL", help="an empty PostgreSQL database")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per case (median)")
    parser.add_argument(
        "--home", type=Path, help="keep the seeded SQLite store here and reuse it on a next run"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        home = args.home or Path(scratch)
        reuse = args.home is not None and (home / "cloche.db").exists() and not args.postgres
        settings = Settings(home=home, db_url=args.postgres)
        store = Store.open(settings)
        try:
            start = time.perf_counter()
            if not reuse:
                seed(store)
            print(f"seeded {ISSUE_SCALE} in {time.perf_counter() - start:.1f} s")
            counter = StatementCounter(store.db.engine)
            rows = bench_listings(store, counter, args.repeat)
            rows += bench_pages(settings, store, counter, args.repeat)
        finally:
            store.close()
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(f"\n{backend}, median of {args.repeat}; budget {BUDGET_MS:.0f} ms per page\n")
    wide = max(len(str(r[1])) for r in rows)
    print(f"{'listing':<20} {'case':<{wide}} {'items':>5} {'total':>6} {'ms':>7} {'SQL':>4}")
    for name, case, n, total, ms, statements in rows:
        flag = "" if ms <= BUDGET_MS else "  over budget"
        print(f"{name:<20} {case:<{wide}} {n!s:>5} {total!s:>6} {ms:7.1f} {statements:>4}{flag}")
    return 0 if all(r[4] <= BUDGET_MS for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
