"""Lineage of a model version, endpoint, batch job or run artifact."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from cloche.api.deps import Reader, StoreDep
from cloche.api.routes import make_router
from cloche.lineage.entities import Lineage
from cloche.lineage.service import get_lineage

router = make_router("/lineage", "lineage")


@router.get("")
def lineage(
    principal: Reader,
    store: StoreDep,
    ref: Annotated[
        str,
        Query(
            max_length=300,
            description="churn:3, churn@prod, an endpoint name, bj_… or RUN/STEP/OUTPUT",
        ),
    ],
) -> Lineage:
    """Show what made a model version, endpoint, batch job or artifact, and what it made."""
    return get_lineage(store, ref)
