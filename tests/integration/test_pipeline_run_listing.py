"""Listing runs in the store (SQLite and PostgreSQL): filters and the search the console's runs
page sends, with LIKE's wildcards taken literally."""

from __future__ import annotations

from cloche.pipelines import component, pipeline, records, registered
from cloche.store.store import Store


@component
def echo(word: str) -> str:
    return word


@pipeline(name="night_ly")
def night_ly(word: str = "hi") -> None:
    echo(word=word)


@pipeline(name="daily")
def daily(word: str = "hi") -> None:
    echo(word=word)


def test_runs_are_searched_by_id_prefix_or_pipeline_name_part(any_store: Store) -> None:
    for pipe in (night_ly, daily):
        registered.register(any_store, pipe, source=f"# {pipe.name}", file_name="p.py", actor="t")
    night = registered.queue_run(any_store, "night_ly", {}, actor="t")
    day = registered.queue_run(any_store, "daily", {}, actor="t")
    ids = lambda **kw: {r.id for r in records.list_runs(any_store, **kw)}  # noqa: E731
    assert ids(search="NIGHT") == {night.id}  # any case, any part of the name
    assert ids(search=day.id[:9]) == {day.id}
    assert ids(search="t_l") == {night.id}
    assert ids(search="%") == set() and ids(search="dai_y") == set()  # wildcards are literal
    assert ids(search="ly", state="queued", pipeline="daily") == {day.id}
    assert records.list_runs(any_store, pipeline="daily")[0].graph == {}  # a listing: no graph
