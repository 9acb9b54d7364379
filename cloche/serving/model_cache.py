"""Model residency behind one interface: get, load, evict, sizes.

Today every worker holds every deployed model; a memory budget with load-on-demand and LRU
eviction can replace this class without touching the protocols or the router.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cloche.runtimes import get_runtime
from cloche.runtimes.base import LoadedModel
from cloche.serving.spec import DeploymentSpec


@dataclass
class CachedModel:
    model: LoadedModel
    size_bytes: int
    load_seconds: float


class ModelCache:
    """Loaded models keyed by version content (sha256 + framework), shared across endpoints."""

    def __init__(self, locate: Callable[[DeploymentSpec], Path]) -> None:
        # ``locate`` gives the folder of a deployment's model files on this machine, verified:
        # the artifact store's cache for `cloche up`, the bundle's model/ for an edge server.
        self._locate = locate
        self._models: dict[str, CachedModel] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(spec: DeploymentSpec) -> str:
        return f"{spec.framework}:{spec.sha256}"

    def get(self, spec: DeploymentSpec) -> LoadedModel | None:
        cached = self._models.get(self.key(spec))
        return cached.model if cached else None

    def load(self, spec: DeploymentSpec) -> LoadedModel:
        """The model for ``spec``, loading it (hashes verified) if not yet resident. Blocking."""
        key = self.key(spec)
        with self._lock:
            if key in self._models:
                return self._models[key].model
            start = time.perf_counter()
            folder = self._locate(spec)
            model = get_runtime(spec.framework).load(folder)
            size = sum(int(f.get("size", 0)) for f in spec.files.values())
            self._models[key] = CachedModel(model, size, time.perf_counter() - start)
            return model

    @contextmanager
    def pinned(self, spec: DeploymentSpec) -> Iterator[LoadedModel]:
        """The model for ``spec``, loaded if it is not resident and held against eviction until
        the block ends: a predict thread takes it around each batch. Blocking."""
        # Nothing is evicted while in use yet: every deployed model stays resident.
        yield self.get(spec) or self.load(spec)

    def warm(self, spec: DeploymentSpec) -> None:
        """Load ``spec``'s model ahead of its first request (a deploy, a worker's start)."""
        self.load(spec)

    def evict(self, keep: set[str]) -> list[str]:
        """Drop every model whose key is not in ``keep``; return the dropped keys."""
        with self._lock:
            dropped = [k for k in self._models if k not in keep]
            for k in dropped:
                del self._models[k]
            return dropped

    def sizes(self) -> dict[str, int]:
        return {k: v.size_bytes for k, v in self._models.items()}

    def load_seconds(self) -> dict[str, float]:
        return {k: v.load_seconds for k, v in self._models.items()}
