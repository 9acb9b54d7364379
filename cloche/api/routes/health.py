"""Liveness of the control plane."""

from __future__ import annotations

from cloche import __version__
from cloche.api.routes import make_router
from cloche.api.schemas import Health

router = make_router("", "health")


@router.get("/health")
async def health() -> Health:
    """Report that the API is up, and its version."""
    return Health(version=__version__)
