"""Endpoints and deployments: create, deploy, split traffic, undeploy, delete.

Every change bumps the serving generation in the same transaction, which is how each worker of
every `cloche up` sharing this store learns that it must reload (see serving/state.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from sqlalchemy import select, update
from sqlalchemy.orm import Session, load_only, selectinload

from cloche import audit
from cloche.endpoints.entities import Deployment, Endpoint
from cloche.endpoints.traffic import check_split_total, rescale
from cloche.endpoints.warm_wait import wait_warm
from cloche.errors import Conflict, DeploymentNotFound, EndpointNotFound, InvalidInput
from cloche.lineage.links import forget as forget_lineage
from cloche.lineage.links import record as record_lineage
from cloche.registry.refs import check_name, parse_ref
from cloche.registry.service import resident_size, resolve_version_row
from cloche.serving.residency import worker_budget
from cloche.sizes import format_size
from cloche.store import paging
from cloche.store.paging import Page, PageRequest
from cloche.store.store import Store
from cloche.store.tables import (
    DeploymentRow,
    EndpointRow,
    ModelRow,
    ServingStateRow,
    VersionRow,
    utcnow,
)

MAX_BATCH_LIMIT = 4096


MAX_WAIT_S = 3600.0  # the longest `deploy --wait` holds a request open

# Endpoints with their deployments and versions, loaded in one round of queries.
WITH_DEPLOYMENTS = selectinload(EndpointRow.deployments).selectinload(DeploymentRow.version)


def _endpoint_row(session: Session, name: str) -> EndpointRow:
    row = session.scalar(
        select(EndpointRow).where(EndpointRow.name == name).options(WITH_DEPLOYMENTS)
    )
    if row is None:
        raise _not_found(name)
    return row


def _not_found(name: str) -> EndpointNotFound:
    return EndpointNotFound(
        f"endpoint {name!r} does not exist",
        hint=f"create it with `cloche endpoints create {name}`",
    )


def require_endpoint(session: Session, name: str) -> None:
    """EndpointNotFound unless an endpoint called ``name`` exists (one cheap query)."""
    if session.scalar(select(EndpointRow.id).where(EndpointRow.name == name)) is None:
        raise _not_found(name)


def _entity(row: EndpointRow) -> Endpoint:
    return Endpoint(
        name=row.name,
        description=row.description,
        log_sample_rate=row.log_sample_rate,
        created_at=audit.as_utc(row.created_at),
        updated_at=audit.as_utc(row.updated_at),
        deployments=[
            Deployment(
                id=d.id,
                model=d.version.model.name,
                version=d.version.version,
                framework=d.version.framework,
                traffic=d.traffic,
                shadow=d.shadow,
                max_batch_size=d.max_batch_size,
                timeout_ms=d.timeout_ms,
                created_at=audit.as_utc(d.created_at),
            )
            for d in row.deployments
        ],
    )


def bump_generation(session: Session) -> None:
    session.execute(
        update(ServingStateRow)
        .where(ServingStateRow.id == 1)
        .values(generation=ServingStateRow.generation + 1)
    )


def _changed(
    session: Session, row: EndpointRow, *, actor: str, action: str, before: dict
) -> Endpoint:
    row.updated_at = utcnow()
    session.flush()
    session.refresh(row)
    after = _entity(row)
    bump_generation(session)
    audit.record(
        session,
        actor=actor,
        action=action,
        resource_type="endpoint",
        resource=row.name,
        before=before or None,
        after=_routing(after),
    )
    return after


def _routing(endpoint: Endpoint) -> dict:
    """What an audit row records of an endpoint's routing: live shares and shadows."""
    return {
        "traffic": endpoint.traffic(),
        "shadow": [d.ref for d in endpoint.deployments if d.shadow],
    }


def _state(row: EndpointRow) -> dict:
    return _routing(_entity(row))


def create_endpoint(
    store: Store,
    *,
    name: str,
    description: str = "",
    log_sample_rate: float = 1.0,
    actor: str = "local",
) -> Endpoint:
    """A new endpoint with no deployments."""
    check_name(name)
    _check_rate(log_sample_rate)
    with store.transaction() as session:
        if session.scalar(select(EndpointRow.id).where(EndpointRow.name == name)) is not None:
            raise Conflict(f"endpoint {name!r} already exists", hint="pick another name")
        row = EndpointRow(
            name=name, description=description, log_sample_rate=log_sample_rate, created_by=actor
        )
        session.add(row)
        session.flush()
        audit.record(
            session, actor=actor, action="endpoint.create", resource_type="endpoint", resource=name
        )
        record_lineage(session, "endpoint", name, "created")
        return _entity(row)


def _check_rate(rate: float) -> None:
    if not 0.0 <= rate <= 1.0:
        raise InvalidInput(
            f"log_sample_rate must be between 0 and 1, got {rate}",
            hint="1 logs every request, 0.1 one in ten, 0 none",
        )


def update_endpoint(
    store: Store,
    *,
    name: str,
    description: str | None = None,
    log_sample_rate: float | None = None,
    actor: str = "local",
) -> Endpoint:
    """Change an endpoint's description or payload-log sampling rate."""
    if log_sample_rate is not None:
        _check_rate(log_sample_rate)
    with store.transaction() as session:
        row = _endpoint_row(session, name)
        before = {"description": row.description, "log_sample_rate": row.log_sample_rate}
        if description is not None:
            row.description = description
        if log_sample_rate is not None:
            row.log_sample_rate = log_sample_rate
        row.updated_at = utcnow()
        bump_generation(session)
        audit.record(
            session,
            actor=actor,
            action="endpoint.update",
            resource_type="endpoint",
            resource=name,
            before=before,
            after={"description": row.description, "log_sample_rate": row.log_sample_rate},
        )
        session.flush()
        return _entity(row)


def list_endpoints(store: Store) -> list[Endpoint]:
    """Every endpoint by name: every page of ``page_endpoints``."""
    return paging.collect(lambda page: page_endpoints(store, page))


ENDPOINTS = paging.Listing(
    name="endpoints",
    sorts={"name": EndpointRow.name, "created": EndpointRow.created_at},
    default="name",
    default_order="asc",
    tiebreak=EndpointRow.id,
)
# Deployments, their versions and those versions' models each in one statement per page,
# reading of a version only what a deployment shows (not its signature, files or baseline).
_PAGE_DEPLOYMENTS = (
    selectinload(EndpointRow.deployments)
    .selectinload(DeploymentRow.version)
    .options(
        load_only(VersionRow.version, VersionRow.framework, VersionRow.model_id),
        selectinload(VersionRow.model).load_only(ModelRow.name),
    )
)


def page_endpoints(store: Store, request: PageRequest) -> Page[Endpoint]:
    """A page of endpoints with their deployments; ``q`` searches the name."""
    query = paging.search(select(EndpointRow).options(_PAGE_DEPLOYMENTS), request, EndpointRow.name)
    with store.transaction() as session:
        return paging.fetch(
            session, query, request, ENDPOINTS, lambda rows: [_entity(r[0]) for r in rows]
        )


def get_endpoint(store: Store, name: str) -> Endpoint:
    with store.transaction() as session:
        return _entity(_endpoint_row(session, name))


def delete_endpoint(store: Store, *, name: str, actor: str = "local") -> None:
    """Delete an endpoint and its deployments; its traffic stops at the next generation."""
    with store.transaction() as session:
        row = _endpoint_row(session, name)
        before = _state(row)
        session.delete(row)
        forget_lineage(session, "endpoint", [name])
        bump_generation(session)
        audit.record(
            session,
            actor=actor,
            action="endpoint.delete",
            resource_type="endpoint",
            resource=name,
            before=before,
        )


def deploy(
    store: Store,
    *,
    endpoint: str,
    ref: str,
    traffic: int | None = None,
    shadow: bool = False,
    max_batch_size: int = 64,
    timeout_ms: int = 10_000,
    actor: str = "local",
    wait_s: float | None = None,
) -> Endpoint:
    """Deploy a model version; with ``traffic`` N the others scale down to 100-N in proportion.

    ``wait_s``: then return only once every serving worker on this home holds it warm (see
    warm_wait.py), raising Unavailable naming the workers that are not after that long."""
    _check_limits(max_batch_size, timeout_ms)
    if wait_s is not None and not 0 < wait_s <= MAX_WAIT_S:
        raise InvalidInput(
            f"the wait must be more than 0 and at most {MAX_WAIT_S:g} s, got {wait_s:g}",
            hint="give the wait in seconds: --wait-timeout 120 (CLI), wait_s: 120 (REST), "
            "wait_timeout_s=120 (SDK)",
        )
    if shadow and traffic:
        raise InvalidInput("a shadow deployment takes no live traffic; drop --traffic or --shadow")
    if traffic is not None and not 0 <= traffic <= 100:
        raise InvalidInput(f"--traffic must be 0-100, got {traffic}")
    check_fits_budget(store, endpoint, ref)
    with store.transaction() as session:
        row = _endpoint_row(session, endpoint)
        version = resolve_version_row(session, parse_ref(ref))
        if any(d.version_id == version.id for d in row.deployments):
            raise Conflict(
                f"{version.model.name}:{version.version} is already deployed to {endpoint!r}",
                hint=f"change its share with `cloche endpoints traffic {endpoint} ...`",
            )
        before = _state(row)
        live = [d for d in row.deployments if not d.shadow]
        share = 0 if shadow else (traffic if traffic is not None else (0 if live else 100))
        others = rescale({d.id: d.traffic for d in live}, 100 - share) if live else {}
        for d in live:
            d.traffic = others[d.id]
        row.deployments.append(
            DeploymentRow(
                version_id=version.id,
                version=version,
                traffic=share,
                shadow=shadow,
                max_batch_size=max_batch_size,
                timeout_ms=timeout_ms,
                created_by=actor,
            )
        )
        record_lineage(session, "endpoint", endpoint, "deployed", _ref(version))
        deployed = _changed(session, row, actor=actor, action="endpoint.deploy", before=before)
        ref = f"{version.model.name}:{version.version}"
        key = f"{version.framework}:{version.sha256}"  # the model cache's key (content)
        size = version.resident_bytes or version.size_bytes
    if wait_s is not None:  # after the commit: the workers learn of it from the store
        wait_warm(store.home, endpoint, ref, key, size_bytes=size, timeout_s=wait_s)
    return deployed


def check_fits_budget(store: Store, endpoint: str, ref: str) -> None:
    """Refuse a model that no worker could hold: larger than a worker's share of the model
    memory budget of a server running on this home. Its size is measured now if it never was
    (outside any transaction: loading takes seconds)."""
    budget = worker_budget(store.home)
    if budget is None:
        return  # no budget, or no server running that has one: nothing to compare against
    with store.transaction() as session:
        require_endpoint(session, endpoint)  # a missing endpoint says so before any measuring
    name, size = resident_size(store, ref)
    if size > budget:
        raise InvalidInput(
            f"{name} takes {format_size(size)} in memory once loaded, more than the "
            f"{format_size(budget)} each worker may hold (its share of --model-memory)",
            hint="start `cloche up` with a larger --model-memory (or fewer --workers), or "
            "deploy a smaller model",
            resident_bytes=size,
            worker_budget_bytes=budget,
        )


def _ref(version: VersionRow) -> str:
    return f"{version.model.name}:{version.version}"


def _check_limits(max_batch_size: int, timeout_ms: int) -> None:
    if not 1 <= max_batch_size <= MAX_BATCH_LIMIT:
        raise InvalidInput(f"max_batch_size must be 1-{MAX_BATCH_LIMIT}, got {max_batch_size}")
    if not 1 <= timeout_ms <= 600_000:
        raise InvalidInput(f"timeout_ms must be 1-600000, got {timeout_ms}")


def _match(row: EndpointRow, ref: str) -> DeploymentRow:
    """The deployment ``ref`` names: ``churn:3``, ``churn@prod``, or a bare version ``3``."""
    if ref.isdigit():
        hits = [d for d in row.deployments if d.version.version == int(ref)]
        if len(hits) > 1:
            names = ", ".join(f"{d.version.model.name}:{ref}" for d in hits)
            raise InvalidInput(f"version {ref} is ambiguous on {row.name!r}: {names}")
    else:
        parsed = parse_ref(ref)
        hits = [
            d
            for d in row.deployments
            if d.version.model.name == parsed.name
            and (parsed.version is None or d.version.version == parsed.version)
            and (
                parsed.alias is None
                or parsed.alias
                in {a.alias for a in d.version.model.aliases if a.version_id == d.version_id}
            )
        ]
        if parsed.version is None and parsed.alias is None and len(hits) > 1:
            raise InvalidInput(
                f"{ref!r} matches several deployments; name the version, e.g. {ref}:3"
            )
    if not hits:
        deployed = (
            ", ".join(f"{d.version.model.name}:{d.version.version}" for d in row.deployments)
            or "none"
        )
        raise DeploymentNotFound(
            f"{ref!r} is not deployed to {row.name!r} (deployed: {deployed})",
            hint=f"deploy it with `cloche endpoints deploy {row.name} {ref}`",
        )
    return hits[0]


def set_traffic(
    store: Store, *, endpoint: str, split: Mapping[str, int], actor: str = "local"
) -> Endpoint:
    """Set every live deployment's share; the shares must sum to 100 (unnamed ones get 0)."""
    check_split_total(split)
    with store.transaction() as session:
        row = _endpoint_row(session, endpoint)
        before = _state(row)
        chosen = {}
        for ref, pct in split.items():
            dep = _match(row, ref)
            if dep.shadow:
                raise InvalidInput(f"{ref} is a shadow deployment and takes no live traffic")
            chosen[dep.id] = pct
        for d in row.deployments:
            if not d.shadow:
                d.traffic = chosen.get(d.id, 0)
        record_lineage(session, "endpoint", endpoint, "traffic", json.dumps(dict(split)))
        return _changed(session, row, actor=actor, action="endpoint.traffic", before=before)


def undeploy(store: Store, *, endpoint: str, ref: str, actor: str = "local") -> Endpoint:
    """Remove a deployment; its share goes to the remaining live ones in proportion."""
    with store.transaction() as session:
        row = _endpoint_row(session, endpoint)
        before = _state(row)
        dep = _match(row, ref)
        row.deployments.remove(dep)
        live = [d for d in row.deployments if not d.shadow]
        shares = rescale({d.id: d.traffic for d in live}, 100)
        for d in live:
            d.traffic = shares[d.id]
        return _changed(session, row, actor=actor, action="endpoint.undeploy", before=before)
