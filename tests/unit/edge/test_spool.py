from __future__ import annotations

from pathlib import Path

import pytest

from cloche.edge.spool import Spool, WhenFull, read_state, segment_files, write_state

LINE = b'[1,"r",' + b"x" * 85 + b"]\t[]\t{}\n"  # 100-byte lines


def lines(n: int) -> list[bytes]:
    return [LINE] * n


def test_at_the_cap_stop_refuses_rows_and_counts_them(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1000, when_full=WhenFull.STOP)
    for _ in range(15):
        spool.write(lines(1))
    assert (spool.logged, spool.refused, spool.evicted) == (10, 5, 0)
    assert sum(p.stat().st_size for p in segment_files(tmp_path)) == 1000
    spool.close()


def test_at_the_cap_drop_oldest_deletes_closed_segments_and_counts_unsynced_rows(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path, max_bytes=1000, when_full=WhenFull.DROP_OLDEST)
    spool.rotate_bytes = 300  # segments of 3 lines
    for _ in range(9):
        spool.write(lines(1))
    oldest = segment_files(tmp_path)[0]
    write_state(tmp_path, {oldest.name: 200})  # two of its three rows were synced already
    for _ in range(3):
        spool.write(lines(1))
    assert spool.refused == 0
    assert spool.evicted == 1  # only the unsynced row of the dropped segment is lost
    assert not oldest.exists()
    assert sum(p.stat().st_size for p in segment_files(tmp_path)) <= 1000
    assert spool.logged == 12
    spool.close()


@pytest.mark.parametrize("when_full", list(WhenFull))
def test_the_spool_resumes_its_size_after_a_restart(tmp_path: Path, when_full: WhenFull) -> None:
    first = Spool(tmp_path, max_bytes=500, when_full=WhenFull.STOP)
    assert len(LINE) == 100
    first.write(lines(4))
    first.close()
    second = Spool(tmp_path, max_bytes=500, when_full=when_full)
    second.write(lines(2))
    # The open segment of a live writer is never dropped; the first writer's closed one may be.
    expected = (0, 2) if when_full is WhenFull.STOP else (2, 0)
    assert (second.logged, second.refused) == expected
    assert read_state(tmp_path) == {}
    second.close()
