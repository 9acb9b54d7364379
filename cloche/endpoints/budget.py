"""The model memory budget against what is deployed, checked when `cloche up` starts: a
worker's share must hold each deployed model, or every request for it would load it again."""

from __future__ import annotations

from sqlalchemy import select

from cloche.errors import InvalidInput
from cloche.sizes import format_size
from cloche.store.store import Store
from cloche.store.tables import DeploymentRow, ModelRow, VersionRow

MIB = 2**20


def check_deployed_fit(store: Store, *, budget_bytes: int, workers: int) -> None:
    """Refuse a budget whose per-worker share is smaller than a deployed model, naming each
    such model with its size (measured once loaded, else its files': a lower bound) and the
    budget that would hold them. No model is loaded: the check costs one query."""
    share = max(1, budget_bytes // workers)
    with store.transaction() as session:
        rows = session.execute(
            select(
                ModelRow.name, VersionRow.version, VersionRow.resident_bytes, VersionRow.size_bytes
            )
            .join(VersionRow, VersionRow.model_id == ModelRow.id)
            .join(DeploymentRow, DeploymentRow.version_id == VersionRow.id)
            .distinct()
            .order_by(ModelRow.name, VersionRow.version)
        ).all()
    too_large = [(f"{n}:{v}", resident or files) for n, v, resident, files in rows]
    too_large = [(ref, size) for ref, size in too_large if size > share]
    if not too_large:
        return
    largest = max(size for _, size in too_large)
    needed = -(-largest * workers // MIB) * MIB  # whole MiB, so the hint's figure is enough
    named = ", ".join(f"{ref} ({format_size(size)})" for ref, size in too_large)
    raise InvalidInput(
        f"--model-memory {format_size(budget_bytes)} leaves {format_size(share)} to each of "
        f"{workers} worker(s), less than deployed models take in memory: {named}",
        hint=f"start with --model-memory {needed // MIB}MiB or more (or fewer --workers), or "
        "undeploy them first (`cloche endpoints undeploy ENDPOINT MODEL:VERSION`)",
        worker_budget_bytes=share,
    )
