"""Pages of the registry's models for the console, REST and SDK (see store/paging.py).

Three statements whatever the page size: the page (each model with its newest version and
version count, by a grouped subquery), the count, and the aliases of the page's models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, aliased

from cloche import audit
from cloche.registry.entities import ModelSummary
from cloche.registry.service import check_labels
from cloche.store import paging
from cloche.store.paging import Page, PageRequest
from cloche.store.store import Store
from cloche.store.tables import AliasRow, ModelRow, VersionRow

_stats = (
    select(
        VersionRow.model_id,
        func.max(VersionRow.version).label("latest"),
        func.count().label("count"),
    )
    .group_by(VersionRow.model_id)
    .subquery()
)
_latest = aliased(VersionRow)

MODELS = paging.Listing(
    name="models",
    sorts={
        "name": ModelRow.name,
        "created": ModelRow.created_at,
        "updated": _latest.created_at,
        "latest_version": _stats.c.latest,
    },
    default="name",
    default_order="asc",
    tiebreak=ModelRow.id,
)


def page_models(
    store: Store, request: PageRequest, *, labels: Mapping[str, str] | None = None
) -> Page[ModelSummary]:
    """Models with at least one version; ``q`` searches name and description, ``labels``
    keeps those with a version carrying all of them."""
    query = (
        select(ModelRow, _stats.c.latest, _stats.c.count, _latest.framework, _latest.labels)
        .join(_stats, _stats.c.model_id == ModelRow.id)
        .join(_latest, and_(_latest.model_id == ModelRow.id, _latest.version == _stats.c.latest))
    )
    query = paging.search(query, request, ModelRow.name, ModelRow.description)
    if wanted := check_labels(labels or {}):
        labelled = select(VersionRow.id).where(
            VersionRow.model_id == ModelRow.id,
            *(VersionRow.labels[key].as_string() == value for key, value in wanted.items()),
        )
        query = query.where(labelled.exists())
    with store.transaction() as session:
        return paging.fetch(session, query, request, MODELS, lambda rows: _summaries(session, rows))


def _summaries(session: Session, rows: Sequence[Any]) -> list[ModelSummary]:
    aliases = _aliases(session, [row[0].id for row in rows])
    return [
        ModelSummary(
            name=model.name,
            description=model.description,
            latest_version=latest,
            version_count=count,
            framework=framework,
            aliases=aliases.get(model.id, {}),
            labels=labels or {},
            created_at=audit.as_utc(model.created_at),
            updated_at=audit.as_utc(model.updated_at),
        )
        for model, latest, count, framework, labels in rows
    ]


def _aliases(session: Session, model_ids: list[int]) -> dict[int, dict[str, int]]:
    if not model_ids:
        return {}
    found: dict[int, dict[str, int]] = {}
    query = (
        select(AliasRow.model_id, AliasRow.alias, VersionRow.version)
        .join(VersionRow, VersionRow.id == AliasRow.version_id)
        .where(AliasRow.model_id.in_(model_ids))
        .order_by(AliasRow.alias)
    )
    for model_id, alias, version in session.execute(query):
        found.setdefault(model_id, {})[alias] = version
    return found
