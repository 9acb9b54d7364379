"""Model residency: which models one worker holds, under its share of the memory budget.

Every batch takes its model with ``with cache.pinned(spec) as model:``; a model is loaded on the
first batch that needs it (or ahead, by ``warm``), and models that no batch holds are evicted
when a load needs room: those used once before those used again (a segmented LRU, ``slru.py``),
so a run of one-off models does not push out the hot ones. Without a budget nothing is evicted
but models no longer deployed (``evict(keep)``): every worker holds every deployed model.

A request is never failed because of the budget: when every other model is pinned, the load
goes ahead over the budget and the excess is evicted as soon as the pins are released.

Loads are timed by stage (fetch, hash check, deserialisation, warm-up) and counted, and the
cache's state is written to a small JSON file per worker (see ``residency.py``), which is how
`cloche models loaded` sees every worker of every server on this home.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloche.errors import ClocheError, Unavailable
from cloche.runtimes.base import LoadedModel
from cloche.serving.heap import map_large_blocks, release_freed
from cloche.serving.model_load import Check, Locate, Sample, StagedLoader
from cloche.serving.slru import PROTECTED_SHARE, SegmentedLRU
from cloche.serving.spec import DeploymentSpec

log = logging.getLogger("cloche.serving")

PUBLISH_EVERY_S = 1.0

SizeOf = Callable[[DeploymentSpec], "int | None"]
OnStage = Callable[[str, float], None]


@dataclass
class CachedModel:
    model: LoadedModel
    size_bytes: int
    load_seconds: float
    pins: int = 0


@dataclass
class ModelStats:
    """What a worker knows of one model, resident or not: kept while it is deployed."""

    model: str
    version: int
    framework: str
    loads: int = 0
    evictions: int = 0
    last_used: float | None = None  # wall clock, seconds since the epoch
    last_load: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    last_error: str | None = None

    def to_dict(self, key: str, cached: CachedModel | None) -> dict[str, Any]:
        return {
            "key": key,
            "model": self.model,
            "version": self.version,
            "framework": self.framework,
            "resident": cached is not None,
            "size_bytes": cached.size_bytes if cached else None,
            "pinned": cached.pins if cached else 0,
            "loads": self.loads,
            "evictions": self.evictions,
            "last_used": self.last_used,
            "load_seconds": dict(self.last_load),
            "last_error": self.last_error,
        }


class ModelCache:
    """Loaded models keyed by version content (sha256 + framework), shared across endpoints."""

    def __init__(
        self,
        locate: Locate,
        *,
        check: Check | None = None,
        budget_bytes: int | None = None,
        size_of: SizeOf | None = None,
        state_file: Path | None = None,
        on_stage: OnStage | None = None,
        warm_up: bool = True,
        sample: Sample | None = None,
    ) -> None:
        # How a model is fetched, checked, deserialised and warmed: see model_load.py.
        self._loader = StagedLoader(locate, check, warm_up, sample)
        self.budget_bytes = budget_bytes
        if budget_bytes is not None:
            map_large_blocks()  # else evicted models' arrays stay on the heap (heap.py)
        # The version's recorded resident size (measured in a child process, see
        # registry/resident.py); unknown sizes fall back to the size of the files.
        self._size_of = size_of
        self._on_stage = on_stage
        self._models: dict[str, CachedModel] = {}
        # Eviction order: once-used models before those used again (see slru.py).
        self._order = SegmentedLRU(
            int(budget_bytes * PROTECTED_SHARE) if budget_bytes is not None else None
        )
        self._stats: dict[str, ModelStats] = {}
        self._used = 0  # bytes of the resident models, kept as they come and go
        self._lock = threading.Lock()  # the tables above; held for microseconds
        # One load at a time per worker: two cold models loading at once would both be counted
        # against room that only one of them has.
        self._load_lock = threading.Lock()
        self._state_file = state_file
        # A plain flag, not an Event: setting it is on every batch's path, and costs nothing.
        self._stale = False
        self._closed = threading.Event()
        self._publishing = threading.Lock()  # loads and the publisher thread share one tmp file
        if state_file is not None:
            self._changed()  # at once: a deploy reads this worker's budget from it
            threading.Thread(target=self._publish_loop, name="model-cache", daemon=True).start()

    @staticmethod
    def key(spec: DeploymentSpec) -> str:
        return f"{spec.framework}:{spec.sha256}"

    # -- the request path ---------------------------------------------------------------

    def get(self, spec: DeploymentSpec) -> LoadedModel | None:
        cached = self._models.get(self.key(spec))
        return cached.model if cached else None

    def resident(self, key: str) -> bool:
        """Whether the model of ``key`` is loaded now; asked before each batch, so lock-free (a
        dict lookup is atomic)."""
        return key in self._models

    def last_error(self, key: str) -> str | None:
        """Why the last load of ``key`` failed (None if it did not, or it never loaded): what
        readiness reports for a model that is not resident."""
        stats = self._stats.get(key)
        return stats.last_error if stats is not None else None

    def load(self, spec: DeploymentSpec) -> LoadedModel:
        """The model for ``spec``, loading it (evicting idle models to make room) if it is not
        resident. Blocking. Not a use: the batch that waits for this load is the model's use."""
        with self.pinned(spec, use=False) as model:
            return model

    @contextmanager
    def pinned(self, spec: DeploymentSpec, *, use: bool = True) -> Iterator[LoadedModel]:
        """The model for ``spec``, loaded if it is not resident and held against eviction until
        the block ends: a predict thread takes it around each batch. Blocking. ``use``: the
        block counts as a use of the model (a batch), which decides its eviction order."""
        key = self.key(spec)
        cached = self._pin(key, use)
        if cached is None:
            cached = self._load_pinned(key, spec, use)
        try:
            yield cached.model
        finally:
            with self._lock:
                cached.pins -= 1
                # Over budget only when a load had to go ahead while all else was pinned.
                if self.budget_bytes is not None and self._used > self.budget_bytes:
                    self._make_room(0)

    def warm(self, spec: DeploymentSpec) -> None:
        """Load ``spec``'s model ahead of its first request (a deploy, a worker's start), only if
        it fits in the room left: warming never evicts, so that a deploy of many models does not
        churn the ones serving traffic."""
        key = self.key(spec)
        with self._lock:
            if key in self._models:
                return
        if self.budget_bytes is not None:
            with self._lock:
                room = self.budget_bytes - self._used
            if self._expected_size(spec) > room:
                return
        with self._load_lock:
            if key not in self._models:
                self._load_now(key, spec, pins=0, evict=False, used=False)

    # -- control --------------------------------------------------------------------------

    def evict(self, keep: set[str]) -> list[str]:
        """Drop every model whose key is not in ``keep`` (no longer deployed); return the
        dropped keys. A batch still holding one finishes with it: the reference it holds keeps
        the model alive until then."""
        with self._lock:
            dropped = [k for k in self._models if k not in keep]
            for k in dropped:
                self._used -= self._models.pop(k).size_bytes
                self._order.remove(k)
            for k in [k for k in self._stats if k not in keep]:
                del self._stats[k]
        if dropped:
            self._changed()
        return dropped

    def sizes(self) -> dict[str, int]:
        with self._lock:
            return {k: v.size_bytes for k, v in self._models.items()}

    def load_seconds(self) -> dict[str, float]:
        with self._lock:
            return {k: v.load_seconds for k, v in self._models.items()}

    def state(self) -> dict[str, Any]:
        """This worker's models for `cloche models loaded`: resident or not, with counts."""
        with self._lock:
            models = [s.to_dict(k, self._models.get(k)) for k, s in self._stats.items()]
            used = self._used
        return {
            "pid": os.getpid(),
            "budget_bytes": self.budget_bytes,
            "used_bytes": used,
            "updated_at": time.time(),
            "models": models,
        }

    def publish(self) -> None:
        """Write this worker's state file now (atomically: readers never see half of it)."""
        if self._state_file is None:
            return
        path = self._state_file
        with self._publishing:
            self._stale = False
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(json.dumps(self.state()))
            tmp.replace(path)

    def close(self) -> None:
        """Stop publishing and remove the state file (a worker shutting down cleanly)."""
        self._closed.set()
        if self._state_file is not None:
            self._state_file.unlink(missing_ok=True)

    # -- inside ---------------------------------------------------------------------------

    def _pin(self, key: str, use: bool) -> CachedModel | None:
        with self._lock:
            cached = self._models.get(key)
            if cached is None:
                return None
            cached.pins += 1
            if use:
                self._order.use(key)
            stats = self._stats.get(key)
            if stats is not None:
                stats.last_used = time.time()
        self._stale = True
        return cached

    def _load_pinned(self, key: str, spec: DeploymentSpec, use: bool) -> CachedModel:
        with self._load_lock:
            cached = self._pin(key, use)  # loaded by another thread while this one waited
            if cached is not None:
                return cached
            return self._load_now(key, spec, pins=1, evict=True, used=use)

    def _load_now(
        self, key: str, spec: DeploymentSpec, *, pins: int, evict: bool, used: bool
    ) -> CachedModel:
        """Load under ``_load_lock``: time each stage, account its size, make room. ``used``:
        the load is for a batch, its first use."""
        stats = self._stats_for(key, spec)
        expected = self._expected_size(spec)
        if evict and self.budget_bytes is not None:
            with self._lock:
                self._make_room(expected)
            release_freed()  # what was evicted leaves the process, not just the cache
        stages: dict[str, float] = {}
        start = time.perf_counter()
        try:
            model = self._loader(spec, stages)
        except Exception as exc:
            reason = exc.message if isinstance(exc, ClocheError) else f"{type(exc).__name__}: {exc}"
            with self._lock:
                stats.last_error = reason
            self._changed()
            # 503 naming the model and the reason: this model's requests fail, no other's.
            raise Unavailable(
                f"model {spec.ref} cannot be loaded: {reason}",
                hint=getattr(exc, "hint", None)
                or "see the server's log; `cloche models loaded --all` shows the last error",
                model=spec.ref,
            ) from exc
        total = time.perf_counter() - start
        cached = CachedModel(model, expected, total, pins=pins)
        with self._lock:
            self._models[key] = cached
            self._order.add(key, cached.size_bytes, used=used)
            self._used += cached.size_bytes
            stats.loads += 1
            stats.last_load = stages
            stats.last_error = None
            stats.last_used = time.time()
            if self.budget_bytes is not None and self._used > self.budget_bytes:
                self._make_room(0)
        if self._on_stage is not None:
            for stage, seconds in stages.items():
                self._on_stage(stage, seconds)
        self._changed()
        return cached

    def _stats_for(self, key: str, spec: DeploymentSpec) -> ModelStats:
        with self._lock:
            stats = self._stats.get(key)
            if stats is None:
                stats = self._stats[key] = ModelStats(spec.model, spec.version, spec.framework)
            return stats

    def _expected_size(self, spec: DeploymentSpec) -> int:
        measured = self._size_of(spec) if self._size_of is not None else None
        if measured:
            return measured
        return sum(int(f.get("size", 0)) for f in spec.files.values())

    def _make_room(self, need: int) -> None:
        """Evict unpinned models in the segmented LRU's order (once-used ones first) until
        ``need`` more bytes fit, or only pinned models are left. Called with ``_lock`` held."""
        assert self.budget_bytes is not None
        while self._used + need > self.budget_bytes:
            victim = next((k for k in self._order.victims() if self._models[k].pins == 0), None)
            if victim is None:
                return  # all pinned: go over the budget, evict when the pins are released
            self._used -= self._models.pop(victim).size_bytes
            self._order.remove(victim)
            stats = self._stats.get(victim)
            if stats is not None:
                stats.evictions += 1
            self._stale = True

    def _changed(self) -> None:
        try:
            self.publish()
        except OSError as exc:  # a full disk must not fail a load
            log.warning("could not write the model cache state: %s", exc)

    def _publish_loop(self) -> None:
        # Last-used times need not be fresher than this; loads and evictions publish at once.
        while not self._closed.wait(PUBLISH_EVERY_S):
            if not self._stale:
                continue
            try:
                self.publish()
            except OSError as exc:
                log.warning("could not write the model cache state: %s", exc)
