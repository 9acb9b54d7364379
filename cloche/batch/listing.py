"""Pages of batch jobs for the console, REST and SDK (see store/paging.py): two statements."""

from __future__ import annotations

from sqlalchemy import select

from cloche.batch.entities import ACTIVE_STATES, FINAL_STATES, BatchJob
from cloche.batch.service import entity
from cloche.store import paging
from cloche.store.paging import Page, PageRequest
from cloche.store.store import Store
from cloche.store.tables import BatchJobRow

JOB_STATES = tuple(sorted(ACTIVE_STATES | FINAL_STATES))
JOBS = paging.Listing(
    name="batch jobs",
    sorts={"created": BatchJobRow.created_at, "state": BatchJobRow.state},
    default="created",
    default_order="desc",
    tiebreak=BatchJobRow.id,
)


def page_jobs(
    store: Store,
    request: PageRequest,
    *,
    state: str | None = None,
    schedule_id: str | None = None,
) -> Page[BatchJob]:
    """Jobs, newest first by default; ``q`` searches the id and the model reference."""
    query = select(BatchJobRow)
    if paging.one_of("state", state, JOB_STATES) is not None:
        query = query.where(BatchJobRow.state == state)
    if schedule_id is not None:
        query = query.where(BatchJobRow.schedule_id == schedule_id)
    query = paging.search(query, request, BatchJobRow.id, BatchJobRow.model_version)
    with store.transaction() as session:
        return paging.fetch(
            session, query, request, JOBS, lambda rows: [entity(r[0]) for r in rows]
        )
