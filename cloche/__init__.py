"""cloche: self-hosted model serving — registry, endpoints, batch, edge and monitoring."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cloche.errors import ClocheError

if TYPE_CHECKING:
    from cloche.client import Client

__version__ = "0.1.0"

__all__ = ["Client", "ClocheError", "__version__"]


def __getattr__(name: str) -> Any:
    # The client (and the control plane behind it) is imported on first use, so that an edge
    # bundle's lean runtime can import cloche.edge without pydantic or SQLAlchemy installed.
    if name == "Client":
        from cloche.client import Client

        return Client
    raise AttributeError(f"module 'cloche' has no attribute {name!r}")
