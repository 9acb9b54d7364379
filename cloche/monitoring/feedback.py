"""Ground-truth labels ("feedback") for requests an endpoint answered, sent any time later.

A label names the request by the id the server gave it (the ``request_id`` of its payload-log
row). Monitors join the labels with the logged predictions of each window to measure the
model's performance (see performance.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pyarrow.compute as pc
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from cloche import audit
from cloche.endpoints.service import require_endpoint
from cloche.errors import InvalidInput
from cloche.logs.service import log_root, read_log
from cloche.monitoring.entities import FeedbackResult
from cloche.store.store import Store
from cloche.store.tables import FeedbackRow, utcnow

MAX_LABELS = 10_000
MAX_REQUEST_ID = 200
LOOKBACK = timedelta(days=30)
_CHUNK = 500  # request ids per IN (...) query


def record_feedback(
    store: Store,
    endpoint: str,
    labels: Sequence[Any],
    *,
    actor: str = "local",
    now: datetime | None = None,
) -> FeedbackResult:
    """Store ground-truth labels for requests ``endpoint`` answered.

    ``labels`` is a list of ``{"request_id": str, "label": number | string | bool}``; at most
    10,000 per call. Labels may arrive days late: a request id is looked up in the endpoint's
    payload log of the last 30 days. Ids not found there (too old, never logged because of the
    endpoint's log sampling rate, not flushed yet, or wrong) are reported in
    ``unknown_request_ids`` and NOT stored. A second label for the same request replaces the
    first (``replaced`` counts those, including repeats within one call, where the last wins).

    Synchronous and self-contained, so the data plane can call it from a worker thread.
    """
    items = _validate(labels)
    now = now or utcnow()
    with store.transaction() as session:
        require_endpoint(session, endpoint)
    logged = _logged_request_ids(store, endpoint, now)
    known = [(rid, label) for rid, label in items if rid in logged]
    unknown = list(dict.fromkeys(rid for rid, _ in items if rid not in logged))
    try:
        replaced = _store(store, endpoint, known, actor=actor, now=now, unknown=len(unknown))
    except IntegrityError:  # a concurrent call inserted one of these ids first: now replace it
        replaced = _store(store, endpoint, known, actor=actor, now=now, unknown=len(unknown))
    return FeedbackResult(accepted=len(known), replaced=replaced, unknown_request_ids=unknown)


def _validate(labels: Any) -> list[tuple[str, Any]]:
    if not isinstance(labels, list | tuple) or not labels:
        raise InvalidInput(
            "labels must be a non-empty list",
            hint='e.g. [{"request_id": "...", "label": 1}]',
        )
    if len(labels) > MAX_LABELS:
        raise InvalidInput(
            f"{len(labels)} labels in one call; at most {MAX_LABELS:,} are allowed",
            hint="send them in several calls",
        )
    items = []
    for i, item in enumerate(labels):
        if not isinstance(item, dict):
            raise InvalidInput(f"labels[{i}] must be an object with request_id and label")
        extra = sorted(set(item) - {"request_id", "label"})
        if extra:
            raise InvalidInput(f"labels[{i}] has unexpected fields: {', '.join(extra)}")
        rid = item.get("request_id")
        if not isinstance(rid, str) or not rid.strip():
            raise InvalidInput(f"labels[{i}].request_id must be a non-empty string")
        if len(rid) > MAX_REQUEST_ID:
            raise InvalidInput(
                f"labels[{i}].request_id is {len(rid)} characters; at most {MAX_REQUEST_ID}"
            )
        if "label" not in item:
            raise InvalidInput(f"labels[{i}] has no label")
        label = item["label"]
        if not isinstance(label, int | float | str | bool):
            raise InvalidInput(
                f"labels[{i}].label must be a number, string or boolean, "
                f"not {type(label).__name__ if label is not None else 'null'}"
            )
        if isinstance(label, float) and not math.isfinite(label):
            raise InvalidInput(f"labels[{i}].label must be a finite number")
        items.append((rid, label))
    return items


def _logged_request_ids(store: Store, endpoint: str, now: datetime) -> set[str]:
    table = read_log(
        log_root(store.home),
        endpoint,
        since=now - LOOKBACK,
        columns=["request_id"],
        shared=store.shared_log,
    )
    if not table.num_rows:
        return set()
    ids = pc.unique(table["request_id"].drop_null())
    return {str(v) for v in ids.to_pylist()}


def _store(
    store: Store,
    endpoint: str,
    items: list[tuple[str, Any]],
    *,
    actor: str,
    now: datetime,
    unknown: int,
) -> int:
    replaced = 0
    with store.transaction() as session:
        existing: dict[str, FeedbackRow] = {}
        ids = list(dict.fromkeys(rid for rid, _ in items))
        for start in range(0, len(ids), _CHUNK):
            rows = session.scalars(
                select(FeedbackRow).where(
                    FeedbackRow.endpoint == endpoint,
                    FeedbackRow.request_id.in_(ids[start : start + _CHUNK]),
                )
            )
            existing.update({row.request_id: row for row in rows})
        for rid, label in items:
            row = existing.get(rid)
            if row is None:
                row = FeedbackRow(endpoint=endpoint, request_id=rid, label=label, received_at=now)
                session.add(row)
                existing[rid] = row
            else:
                row.label, row.received_at = label, now
                replaced += 1
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="feedback.record",
            resource_type="endpoint",
            resource=endpoint,
            after={"accepted": len(items), "replaced": replaced, "unknown": unknown},
        )
    return replaced


def labels_for(store: Store, endpoint: str, request_ids: Sequence[str]) -> dict[str, Any]:
    """The stored label of each of ``request_ids`` that has one."""
    found: dict[str, Any] = {}
    ids = list(dict.fromkeys(request_ids))
    with store.transaction() as session:
        for start in range(0, len(ids), _CHUNK):
            rows = session.execute(
                select(FeedbackRow.request_id, FeedbackRow.label).where(
                    FeedbackRow.endpoint == endpoint,
                    FeedbackRow.request_id.in_(ids[start : start + _CHUNK]),
                )
            )
            found.update({rid: label for rid, label in rows})
    return found
