"""A large request fed to the queue piece by piece: what happens when a piece does not answer."""

from __future__ import annotations

import asyncio

import numpy as np

from cloche.serving.batcher import Job
from cloche.serving.large import LargeRequest


def _whole(rows: int) -> Job:
    future: asyncio.Future[dict[str, np.ndarray]] = asyncio.get_running_loop().create_future()
    return Job(np.zeros((rows, 2)), frozenset({"predict"}), future, deadline=1e12, timeout_s=10)


def test_pieces_are_queued_one_at_a_time_and_joined_in_row_order() -> None:
    async def main() -> None:
        whole = _whole(5)
        queued: list[Job] = []
        LargeRequest(whole, 2, queued.append, None).start()
        for expected in (2, 2, 1):
            assert len(queued) == 1 and queued[0].rows == expected  # only one piece waits
            piece = queued.pop()
            piece.future.set_result({"predict": np.full(piece.rows, expected)})
            await asyncio.sleep(0)  # done callbacks run on the next loop turn
        assert whole.future.result()["predict"].tolist() == [2, 2, 2, 2, 1]

    asyncio.run(main())


def test_a_cancelled_piece_cancels_the_whole_request_and_queues_no_more() -> None:
    async def main() -> None:
        whole = _whole(5)
        queued: list[Job] = []
        LargeRequest(whole, 2, queued.append, None).start()
        queued.pop().future.cancel()  # a worker stopping cancels what it holds
        await asyncio.sleep(0)
        assert whole.future.cancelled() and queued == []

    asyncio.run(main())
