"""Pages of registered pipelines, and of one pipeline's versions (see store/paging.py).

A pipeline is listed once, as its newest version: a join on each name's highest version, so
the page is sorted and cut in SQL (1,000 pipelines cost what 10 do) and the count is of names.
"""

from __future__ import annotations

from sqlalchemy import func, select

from cloche.errors import PipelineNotFound
from cloche.registry.refs import check_name
from cloche.store import paging
from cloche.store.paging import Page, PageRequest
from cloche.store.store import Store
from cloche.store.tables import PipelineRow

from .registered import RegisteredPipeline, entity

PIPELINES = paging.Listing(
    name="pipelines",
    sorts={
        "name": PipelineRow.name,
        "updated": PipelineRow.created_at,
        "version": PipelineRow.version,
    },
    default="name",
    default_order="asc",
    tiebreak=PipelineRow.id,
)
VERSIONS = paging.Listing(
    name="pipeline versions",
    sorts={"version": PipelineRow.version},
    default="version",
    default_order="desc",
    tiebreak=PipelineRow.id,
)


def page_pipelines(store: Store, request: PageRequest) -> Page[RegisteredPipeline]:
    """Each registered pipeline as its newest version, by name by default; ``q`` searches
    the name."""
    newest = (
        select(PipelineRow.name, func.max(PipelineRow.version).label("version"))
        .group_by(PipelineRow.name)
        .subquery()
    )
    query = select(PipelineRow).join(
        newest, (PipelineRow.name == newest.c.name) & (PipelineRow.version == newest.c.version)
    )
    query = paging.search(query, request, PipelineRow.name)
    with store.transaction() as session:
        return paging.fetch(
            session, query, request, PIPELINES, lambda rows: [entity(r[0]) for r in rows]
        )


def page_versions(store: Store, name: str, request: PageRequest) -> Page[RegisteredPipeline]:
    """The registered versions of pipeline ``name``, newest first by default
    (PipelineNotFound if it has none)."""
    query = select(PipelineRow).where(PipelineRow.name == check_name(name))
    with store.transaction() as session:
        found = paging.fetch(
            session, query, request, VERSIONS, lambda rows: [entity(r[0]) for r in rows]
        )
    if found.total == 0:
        raise PipelineNotFound(
            f"no registered pipeline {name!r}",
            hint="register it with `cloche pipelines register FILE.py`",
        )
    return found
