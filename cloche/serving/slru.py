"""Which resident model a worker's cache evicts first: a segmented LRU (SLRU).

Plain LRU forgets how often a model is used: a run of models asked for once each (a sweep, a
tenant's nightly check) pushes out the model serving most of the traffic, which then pays a cold
load on its next request. SLRU keeps two segments, each least recently used first:

- a model enters **probation** when it is loaded; its first batch marks it used;
- its **second** use promotes it to the **protected** segment, which is bounded (a share of the
  worker's budget), so that room always remains for newcomers; a model pushed out of a full
  protected segment goes back to the top of probation, used, and a further use promotes it again;
- eviction takes probation's least recently used model first, then protected's.

So a model used once goes before any model used twice, and the hot set, once protected, stays
through any run of one-off models. Every operation is a dict lookup and an ``OrderedDict`` move:
O(1), on the path of every batch (``use``).

This class keeps only the order; the cache keeps the models, their pins and sizes, and calls
every method with its lock held.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

PROTECTED_SHARE = 0.8  # of the worker's budget: the rest is probation's at least


class SegmentedLRU:
    """Keys of resident models in two segments. ``protected_bytes`` bounds the protected
    segment (None: unbounded, for a cache without a budget, where nothing is evicted anyway)."""

    def __init__(self, protected_bytes: int | None) -> None:
        self.protected_bytes = protected_bytes
        # key -> (size in bytes, used since it entered probation), least recently used first
        self._probation: OrderedDict[str, tuple[int, bool]] = OrderedDict()
        self._protected: OrderedDict[str, int] = OrderedDict()  # key -> size
        self._protected_used = 0

    def add(self, key: str, size: int, *, used: bool) -> None:
        """A model just loaded: on top of probation. ``used``: its load was for a batch (that
        batch is its first use), not a warm-up or a preload ahead of one."""
        self.remove(key)
        self._probation[key] = (size, used)

    def use(self, key: str) -> None:
        """A batch took the model: a second use promotes it, any use makes it most recent."""
        if key in self._protected:
            self._protected.move_to_end(key)
            return
        entry = self._probation.get(key)
        if entry is None:
            return  # evicted or dropped meanwhile: the next load adds it again
        size, used = entry
        if not used:
            self._probation[key] = (size, True)
            self._probation.move_to_end(key)
            return
        del self._probation[key]
        self._protected[key] = size
        self._protected_used += size
        self._demote_overflow()

    def remove(self, key: str) -> None:
        if self._probation.pop(key, None) is None:
            size = self._protected.pop(key, None)
            if size is not None:
                self._protected_used -= size

    def victims(self) -> Iterator[str]:
        """Keys in eviction order: probation's least recently used first, then protected's.
        Do not change the segments while iterating (the cache takes the first unpinned key)."""
        yield from self._probation
        yield from self._protected

    def protected(self, key: str) -> bool:
        return key in self._protected

    def _demote_overflow(self) -> None:
        # The newest protected model always stays, even alone over the bound: it was just used.
        limit = self.protected_bytes
        while limit is not None and self._protected_used > limit and len(self._protected) > 1:
            key, size = self._protected.popitem(last=False)
            self._protected_used -= size
            self._probation[key] = (size, True)  # a second chance: one more use promotes it
