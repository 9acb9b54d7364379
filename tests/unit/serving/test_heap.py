"""A budgeted worker gives freed model arrays back to the OS (serving/heap.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cloche.serving import heap

# In a fresh interpreter: the threshold is process-wide, and this test's own heap must not
# depend on what other tests allocated before it.
SCRIPT = """
import numpy as np, psutil
from cloche.serving.heap import map_large_blocks, release_freed
map_large_blocks()
big = np.ones(4_000_000)
rss = lambda: psutil.Process().memory_info().rss
del big  # freeing a large mapped block is what raises glibc's dynamic threshold
before = rss()
# 300 arrays of 320 KiB, as a model's: above a raised threshold they would live on the heap.
arrays = [np.ones(40_960) for _ in range(300)]
grown = rss() - before
del arrays
release_freed()
print(grown, rss() - before)
"""


@pytest.mark.skipif(heap._LIBC is None, reason="glibc's allocator only")
def test_freed_arrays_leave_the_process_once_the_threshold_is_fixed() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    grown, left = (int(v) for v in out.stdout.split())
    assert grown > 80 * 2**20  # the arrays were resident
    assert left < 10 * 2**20  # and are not any more


def test_both_calls_are_harmless_more_than_once() -> None:
    heap.map_large_blocks()
    heap.map_large_blocks()
    heap.release_freed()
    heap.release_freed()
