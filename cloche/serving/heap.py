"""Giving an evicted model's memory back to the operating system (glibc).

Freeing a model returns its memory to the C allocator, which keeps much of it: arrays under
glibc's mmap threshold live in heap arenas that are only returned by ``malloc_trim``, and the
threshold itself rises each time a large block is freed, so a server that loads and evicts
models keeps ever more of them on its heap. Under a memory budget that would bound nothing, so
a budgeted worker pins the threshold (large arrays are mapped, and unmapped when freed) and
trims after evicting. Elsewhere (musl, macOS) both are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("cloche.serving")
M_MMAP_THRESHOLD = -3  # mallopt's parameter number in glibc's malloc.h
MMAP_THRESHOLD_BYTES = 256 * 1024


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    if libc is None or not hasattr(libc, "malloc_trim") or not hasattr(libc, "mallopt"):
        return None
    return libc


_LIBC = _libc()


def map_large_blocks() -> None:
    """Fix the mmap threshold, so large arrays go back to the OS as soon as they are freed."""
    if _LIBC is not None and not _LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES):
        log.warning("could not fix the mmap threshold: evicted models may stay resident")


def release_freed() -> None:
    """Return the heap's free pages to the OS (milliseconds; called after evictions, off the
    event loop)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
