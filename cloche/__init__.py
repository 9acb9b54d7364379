"""cloche: self-hosted model serving — registry, endpoints, batch, edge and monitoring."""

from cloche.client import Client
from cloche.errors import ClocheError

__version__ = "0.1.0"

__all__ = ["Client", "ClocheError", "__version__"]
