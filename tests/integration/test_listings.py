"""Paged listings (store/paging.py) on SQLite and PostgreSQL: search, every sort key both ways,
pages without duplicates or gaps, filters, bad parameters over REST, and no N+1 queries."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from sqlalchemy import event

import cloche
from cloche import audit
from cloche.api.app import create_app
from cloche.auth import tokens
from cloche.batch import listing as batch_listing
from cloche.config import Settings
from cloche.endpoints import service as endpoints
from cloche.errors import FeatureNotFound, InvalidPage
from cloche.monitoring import listing as monitoring_listing
from cloche.pipelines import records
from cloche.registry import listing as registry_listing
from cloche.store.paging import Listing, Page, PageRequest
from cloche.store.store import Store

ROOT = Path(__file__).resolve().parents[2]


def _load_seed() -> ModuleType:
    # bench/ is a folder of scripts, not a package: load the seeder (and the modules beside it
    # that it imports) as bench/console.py does.
    sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("bench_seed", ROOT / "bench" / "_seed.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


seeder = _load_seed()
SMALL = seeder.Scale(
    models=12, endpoints=9, jobs=40, runs=40, monitors=8, alerts=30, audit=40, tokens=11
)
Lister = Callable[[Store, PageRequest], Page[Any]]

# listing -> (list function, its sort whitelist, sort key -> the item's value, the item's id)
CASES: dict[str, tuple[Lister, Listing, dict[str, Callable[[Any], Any]]]] = {
    "models": (
        registry_listing.page_models,
        registry_listing.MODELS,
        {
            "name": lambda m: m.name,
            "created": lambda m: m.created_at,
            "latest_version": lambda m: m.latest_version,
        },
    ),
    "endpoints": (
        endpoints.page_endpoints,
        endpoints.ENDPOINTS,
        {"name": lambda e: e.name, "created": lambda e: e.created_at},
    ),
    "jobs": (
        batch_listing.page_jobs,
        batch_listing.JOBS,
        {"created": lambda j: j.created_at, "state": lambda j: j.state},
    ),
    "runs": (
        records.page_runs,
        records.RUNS,
        {"created": lambda r: r.created_at, "state": lambda r: r.state},
    ),
    "monitors": (
        monitoring_listing.page_monitors,
        monitoring_listing.MONITORS,
        {"name": lambda m: m.name, "created": lambda m: m.created_at},
    ),
    "alerts": (
        monitoring_listing.page_alerts,
        monitoring_listing.ALERTS,
        {"opened": lambda a: a.opened_at, "monitor": lambda a: a.monitor},
    ),
    "audit": (audit.page_audit, audit.AUDIT, {"at": lambda e: e.at}),
    "tokens": (
        tokens.page_tokens,
        tokens.TOKENS,
        {"name": lambda t: t.name, "role": lambda t: t.role, "created": lambda t: t.created_at},
    ),
}


def _key(item: Any) -> Any:
    return getattr(item, "id", None) or item.name


def _all_pages(lister: Lister, store: Store, **asked: Any) -> list[Any]:
    items: list[Any] = []
    offset: int | None = 0
    while offset is not None:
        page = lister(store, PageRequest(limit=7, offset=offset, **asked))
        items += page.items
        offset = page.next_offset
    assert len(items) == page.total
    return items


@pytest.fixture
def seeded(any_store: Store) -> Store:
    seeder.seed(any_store, SMALL)
    return any_store


@pytest.mark.parametrize("name", CASES)
def test_pages_cover_every_row_once_in_each_sort_order(seeded: Store, name: str) -> None:
    lister, listing, values = CASES[name]
    assert set(values) <= set(listing.sorts)
    everything = {_key(i) for i in lister(seeded, PageRequest(limit=200)).items}
    for sort, value in values.items():
        for order in ("asc", "desc"):
            items = _all_pages(lister, seeded, sort=sort, order=order)
            keys = [_key(i) for i in items]
            assert len(keys) == len(set(keys)) and set(keys) == everything, (sort, order)
            seen = [value(i) for i in items]
            assert seen == sorted(seen, reverse=order == "desc"), (sort, order)


def test_model_search_matches_name_or_description_in_any_case(seeded: Store) -> None:
    page = registry_listing.page_models(seeded, PageRequest(q="MODEL-0001"))
    assert sorted(m.name for m in page.items) == ["model-00010", "model-00011"]
    assert page.total == 2 and page.next_offset is None


def test_model_page_carries_latest_version_count_and_aliases(seeded: Store) -> None:
    from cloche.registry import service as registry

    paged = registry_listing.page_models(seeded, PageRequest(limit=200)).items
    assert paged == registry.list_models(seeded)


def test_search_wildcards_match_themselves(seeded: Store) -> None:
    assert registry_listing.page_models(seeded, PageRequest(q="model_0")).total == 0
    assert registry_listing.page_models(seeded, PageRequest(q="%")).total == 0


def test_models_filter_by_label(seeded: Store) -> None:
    risk = registry_listing.page_models(seeded, PageRequest(limit=200), labels={"team": "risk"})
    none = registry_listing.page_models(seeded, PageRequest(), labels={"team": "nobody"})
    assert 0 < risk.total < SMALL.models and none.total == 0


def test_runs_filter_by_state_and_pipeline(seeded: Store) -> None:
    waiting = records.page_runs(seeded, PageRequest(limit=200), state="waiting")
    assert waiting.total and all(r.state == "waiting" for r in waiting.items)
    retrain = records.page_runs(seeded, PageRequest(limit=200), pipeline="retrain")
    assert retrain.total and all(r.pipeline == "retrain" for r in retrain.items)


def test_jobs_alerts_and_audit_filter(seeded: Store) -> None:
    failed = batch_listing.page_jobs(seeded, PageRequest(limit=200), state="succeeded")
    assert failed.total and all(j.state == "succeeded" for j in failed.items)
    opened = monitoring_listing.page_alerts(seeded, PageRequest(limit=200), state="open")
    assert opened.total and all(a.state == "open" for a in opened.items)
    one = monitoring_listing.page_alerts(seeded, PageRequest(limit=200), monitor="watch-00001")
    assert all(a.monitor == "watch-00001" for a in one.items)
    bob = audit.page_audit(seeded, PageRequest(limit=200), actor="bob")
    assert bob.total and all(e.actor == "bob" for e in bob.items)


def test_an_unknown_filter_value_names_the_allowed_ones(seeded: Store) -> None:
    with pytest.raises(InvalidPage, match="waiting"):
        records.page_runs(seeded, PageRequest(), state="stuck")
    with pytest.raises(InvalidPage, match="open, resolved"):
        monitoring_listing.page_alerts(seeded, PageRequest(), state="closed")


@contextmanager
def _statements(store: Store) -> Iterator[list[int]]:
    box = [0]

    def seen(*_: Any) -> None:
        box[0] += 1

    event.listen(store.db.engine, "before_cursor_execute", seen)
    try:
        yield box
    finally:
        event.remove(store.db.engine, "before_cursor_execute", seen)


@pytest.mark.parametrize("name", CASES)
def test_statements_per_page_do_not_grow_with_rows(any_store: Store, name: str) -> None:
    lister = CASES[name][0]
    counts = []
    for tag, scale in (("a", 1), ("b", 9)):  # 10 rows of each kind, then 100
        seeder.seed(
            any_store,
            seeder.Scale(**{f: 10 * scale for f in seeder.COUNTS}),
            tag=tag,
        )
        with _statements(any_store) as statements:
            page = lister(any_store, PageRequest(limit=100))
        assert len(page.items) >= 10 * scale or name == "models"
        counts.append(statements[0])
    assert counts[0] == counts[1] <= 5


def _get(settings: Settings, store: Store, path: str) -> httpx.Response:
    app = create_app(settings, store=store)
    admin = {"Authorization": f"Bearer {tokens.create_token(store, role='admin').token}"}

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            return await http.get(f"/api/v1{path}", headers=admin)

    return asyncio.run(call())


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/models?sort=colour", ["'colour'", "created, latest_version, name, updated"]),
        ("/endpoints?limit=0", ["limit 0"]),
        ("/batch-jobs?offset=-1", ["offset -1"]),
        ("/batch-jobs?order=newest", ["'newest' is not asc or desc"]),
        ("/pipelines/runs?sort=name", ["created, state"]),
        ("/alerts?state=closed", ["open, resolved"]),
        ("/monitors?sort=endpoint", ["created, name, next_run"]),
        ("/audit?sort=actor", ["at"]),
        ("/tokens?sort=secret", ["created, name, role"]),
    ],
)
def test_bad_page_parameters_are_a_400_that_says_what_to_send(
    settings: Settings, seeded: Store, path: str, words: list[str]
) -> None:
    response = _get(settings, seeded, path)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_page"
    assert all(w in error["message"] for w in words), error["message"]


def test_rest_pages_keep_the_array_and_say_where_the_next_starts(
    settings: Settings, seeded: Store
) -> None:
    first = _get(settings, seeded, "/batch-jobs?limit=15&sort=state&order=desc")
    assert first.status_code == 200 and len(first.json()) == 15
    assert first.headers["X-Total-Count"] == str(SMALL.jobs)
    assert first.headers["X-Next-Offset"] == "15"
    assert "offset=15" in first.headers["Link"] and first.headers["Link"].endswith('rel="next"')
    last = _get(settings, seeded, "/batch-jobs?limit=15&offset=30")
    assert len(last.json()) == SMALL.jobs - 30 and "X-Next-Offset" not in last.headers
    found = _get(settings, seeded, "/models?q=model-0001")
    assert [m["name"] for m in found.json()] == ["model-00010", "model-00011"]


def test_sdk_lists_follow_pages_past_the_ceiling_alike_in_both_transports(
    settings: Settings, client: cloche.Client
) -> None:
    store = Store.open(settings)
    try:
        seeder.seed(store, seeder.Scale(models=3, endpoints=2, jobs=450, runs=3, monitors=2,
                                        alerts=3, audit=3, tokens=3))  # fmt: skip
    finally:
        store.close()
    everything = client.batch.list(limit=None)
    assert len(everything) == 450 and len({j.id for j in everything}) == 450
    middle = client.batch.list(limit=250, offset=100, sort="created", order="desc")
    assert [j.id for j in middle] == [j.id for j in everything[100:350]]
    found = client.models.list(q="MODEL-0000", sort="name", order="desc")
    assert [m.name for m in found] == ["model-00002", "model-00001", "model-00000"]
    with pytest.raises(InvalidPage, match="limit"):
        client.batch.list(limit=0)
    with pytest.raises(InvalidPage, match="created, state"):
        client.pipelines.runs(sort="name")


def test_a_feature_chart_reads_its_entry_alone_in_constant_statements(any_store: Store) -> None:
    """A month of hourly runs (each storing every feature's figures and histogram): the
    feature's history and histogram come from that feature's entry, read by the database, in
    the same statements whatever the runs hold."""
    from sqlalchemy import select

    from cloche.monitoring import history
    from cloche.store.tables import MonitorRunRow

    seeder.seed(any_store, seeder.Scale(models=3, endpoints=2, jobs=0, runs=0, monitors=2,
                                        alerts=0, audit=0, tokens=0, histories=1))  # fmt: skip
    with _statements(any_store) as statements:
        found = history.feature_history(any_store, "watch-00000", "f1", limit=200)
        histogram = history.feature_histogram(any_store, "watch-00000", "f1")
    assert statements[0] <= 4 and len(found.points) == 200
    with any_store.transaction() as session:
        newest = session.scalars(select(MonitorRunRow).order_by(MonitorRunRow.id.desc())).first()
        assert newest is not None
        stored = newest.results["features"]["f1"]
    assert found.points[-1].run == histogram.run == newest.id
    assert found.points[-1].skew is not None
    assert found.points[-1].skew.value == stored["skew"]["value"]
    assert histogram.baseline == stored["histogram"]["baseline"]
    with pytest.raises(FeatureNotFound, match="'tenure'") as missing:
        history.feature_history(any_store, "watch-00000", "tenure")
    assert missing.value.hint == "its features: " + ", ".join(f"f{i}" for i in range(8))


def test_a_feature_named_with_a_quote_is_read_from_the_whole_results(any_store: Store) -> None:
    """SQLite's JSON paths cannot name a key holding a double quote: such a feature's chart
    reads the runs' whole results instead, and finds the same figures."""
    from sqlalchemy import select

    from cloche.monitoring import history
    from cloche.store.tables import MonitorRunRow

    seeder.seed(any_store, seeder.Scale(models=3, endpoints=2, jobs=0, runs=0, monitors=2,
                                        alerts=0, audit=0, tokens=0, histories=1))  # fmt: skip
    with any_store.transaction() as session:
        newest = session.scalars(select(MonitorRunRow).order_by(MonitorRunRow.id.desc())).first()
        assert newest is not None
        features = dict(newest.results["features"])
        features['spend "usd"'] = features["f1"]
        newest.results = {**newest.results, "features": features}
        newest_id = newest.id
    found = history.feature_history(any_store, "watch-00000", 'spend "usd"')
    histogram = history.feature_histogram(any_store, "watch-00000", 'spend "usd"')
    expected = history.feature_history(any_store, "watch-00000", "f1", limit=1).points[0]
    assert [p.run for p in found.points] == [newest_id] and found.points[0].skew == expected.skew
    assert histogram.run == newest_id
    assert histogram.baseline == history.feature_histogram(any_store, "watch-00000", "f1").baseline
