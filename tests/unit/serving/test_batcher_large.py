"""Requests larger than a batch: answered whole, in pieces, between small requests."""

import asyncio
import time

import numpy as np
import pytest

from cloche.errors import Overloaded, PayloadTooLarge, PredictFailed, Timeout
from cloche.serving.batcher import AdaptiveBatcher

PREDICT = frozenset({"predict"})


def _batcher(fn, **kw) -> AdaptiveBatcher:
    opts = {"max_batch_size": 8, "max_queue_rows": 100, "name": "t"} | kw
    return AdaptiveBatcher(fn, **opts)


def _rows(n: int, start: int = 0) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.float64).reshape(-1, 1)


def test_a_request_larger_than_a_batch_is_answered_whole_in_row_order() -> None:
    sizes: list[int] = []

    def fn(X, wanted):
        sizes.append(len(X))
        out = {"predict": X[:, 0] * 2}
        if "probabilities" in wanted:
            out["probabilities"] = np.column_stack([X[:, 0], -X[:, 0]])
        return out

    async def main():
        b = _batcher(fn, max_batch_size=8, max_queue_rows=16)
        out = await b.submit(_rows(100), frozenset({"predict", "probabilities"}), 5)
        assert out["predict"].tolist() == [2.0 * i for i in range(100)]
        assert out["probabilities"].shape == (100, 2)
        assert out["probabilities"][:, 0].tolist() == list(map(float, range(100)))
        assert b.queued_rows == 0

    asyncio.run(main())
    assert max(sizes) == 8 and sum(sizes) == 100


def test_a_request_over_the_row_cap_gets_413_naming_the_cap_and_setting() -> None:
    async def main():
        b = _batcher(lambda X, w: {"predict": X[:, 0]}, max_request_rows=50)
        with pytest.raises(PayloadTooLarge) as refused:
            b.enqueue(_rows(51), PREDICT, 5)
        assert refused.value.http_status == 413
        assert "at most 50 rows" in str(refused.value)
        assert "CLOCHE_SERVING__MAX_REQUEST_ROWS" in str(refused.value)
        assert (await b.submit(_rows(50), PREDICT, 5))["predict"].tolist() == list(range(50))

    asyncio.run(main())


def test_small_requests_are_served_between_a_large_requests_pieces() -> None:
    batches: list[list[float]] = []

    async def main():
        b = _batcher(fn, max_batch_size=8, max_queue_rows=16)
        small: list[asyncio.Future] = []

        def fn_impl(X, wanted):
            if not batches:  # small requests arrive while the large one's first piece runs
                loop = asyncio.get_running_loop()
                loop.call_soon(
                    lambda: small.extend(
                        b.enqueue(_rows(1, 1000 + i), PREDICT, 5) for i in range(3)
                    )
                )
            batches.append(X[:, 0].tolist())
            return {"predict": X[:, 0]}

        fns.append(fn_impl)
        large = await b.submit(_rows(80), PREDICT, 5)
        assert large["predict"].tolist() == list(map(float, range(80)))
        assert [(await f)["predict"].tolist() for f in small] == [[1000.0], [1001.0], [1002.0]]

    fns: list = []

    def fn(X, wanted):
        return fns[0](X, wanted)

    asyncio.run(main())
    # The small ones waited one piece, not the whole large request.
    assert batches[1] == [1000.0, 1001.0, 1002.0] and len(batches) == 11


def test_a_large_request_waits_for_queue_room_instead_of_being_refused() -> None:
    def fn(X, wanted):
        time.sleep(0.001)
        return {"predict": X[:, 0]}

    async def main():
        b = _batcher(fn, max_batch_size=8, max_queue_rows=16)
        small = [b.submit(_rows(1, i), PREDICT, 5) for i in range(16)]  # the queue is full
        results = await asyncio.gather(*small, b.submit(_rows(40), PREDICT, 5))
        assert results[-1]["predict"].tolist() == list(map(float, range(40)))
        assert [r["predict"].tolist() for r in results[:-1]] == [[float(i)] for i in range(16)]

    asyncio.run(main())


def test_a_really_full_queue_still_refuses_small_requests_while_a_large_one_runs() -> None:
    def fn(X, wanted):
        time.sleep(0.001)
        return {"predict": X[:, 0]}

    async def main():
        b = _batcher(fn, max_batch_size=4, max_queue_rows=8)
        large = b.enqueue(_rows(40), PREDICT, 5)  # holds one piece (4 rows) of the queue
        small, refused = [], []
        for i in range(6):  # all read in one loop turn, before the model runs
            try:
                small.append(b.enqueue(_rows(1, i), PREDICT, 5))
            except Overloaded as exc:
                refused.append(exc)
        assert len(refused) == 2 and "is full (8 rows waiting, at most 8)" in str(refused[0])
        assert [(await f)["predict"].tolist() for f in small] == [[0.0], [1.0], [2.0], [3.0]]
        assert (await large)["predict"].tolist() == list(map(float, range(40)))

    asyncio.run(main())


def test_a_large_requests_deadline_covers_all_its_pieces() -> None:
    def fn(X, wanted):
        time.sleep(0.02)
        return {"predict": X[:, 0]}

    async def main():
        b = _batcher(fn, max_batch_size=4)
        with pytest.raises(Timeout, match="within 100 ms"):
            await b.submit(_rows(40), PREDICT, 0.1)  # ten pieces of 20 ms
        assert (await b.submit(_rows(8), PREDICT, 5))["predict"].tolist() == list(range(8))

    asyncio.run(main())


def test_a_piece_the_model_fails_on_fails_the_whole_request() -> None:
    def fn(X, wanted):
        if (X == 13).any():
            raise ValueError("thirteen")
        return {"predict": X[:, 0]}

    async def main():
        b = _batcher(fn, max_batch_size=4)
        with pytest.raises(PredictFailed, match="thirteen"):
            await b.submit(_rows(40), PREDICT, 5)
        assert b.queued_rows == 0

    asyncio.run(main())


def test_a_large_request_is_reported_once_whole_and_its_pieces_as_batches() -> None:
    batches: list[tuple[int, list]] = []
    whole: list[tuple[int, object, int]] = []

    async def main():
        b = _batcher(
            lambda X, w: {"predict": X[:, 0]},
            max_batch_size=8,
            on_batch=lambda jobs, results: batches.append(
                (sum(j.rows for j in jobs), [j.meta for j in jobs])
            ),
            on_large=lambda job, result: whole.append((job.rows, job.meta, len(result["predict"]))),
        )
        await b.submit(_rows(20), PREDICT, 5, meta="request-1")

    asyncio.run(main())
    assert whole == [(20, "request-1", 20)]
    assert batches == [(8, [None]), (8, [None]), (4, [None])]
