"""What a worker serves: deployments and the snapshot that groups them by endpoint.

Plain data, with no store behind it: a `cloche up` worker reads them from the metadata store
(state.py), an edge server from a bundle's manifest (cloche/edge/bundle.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DeploymentSpec:
    """Everything a worker needs to load and serve one deployment."""

    deployment_id: int
    endpoint: str
    model: str
    version: int
    framework: str
    artifact_key: str
    files: dict[str, Any]
    sha256: str
    signature: dict[str, Any]
    traffic: int
    shadow: bool
    max_batch_size: int
    timeout_ms: int
    log_sample_rate: float = 1.0

    @property
    def ref(self) -> str:
        return f"{self.model}:{self.version}"


@dataclass(frozen=True)
class Snapshot:
    generation: int
    endpoints: dict[str, list[DeploymentSpec]]
