import asyncio
import threading
import time

import numpy as np
import pytest

from cloche.errors import Overloaded, PredictFailed, Timeout
from cloche.serving.batcher import AdaptiveBatcher

PREDICT = frozenset({"predict"})


def _batcher(fn, **kw) -> AdaptiveBatcher:
    opts = {"max_batch_size": 8, "max_queue_rows": 100, "name": "t"} | kw
    return AdaptiveBatcher(fn, **opts)


def test_idle_model_answers_alone_at_once() -> None:
    sizes: list[int] = []

    def fn(X, wanted):
        sizes.append(len(X))
        return {"predict": X.sum(axis=1)}

    async def main():
        b = _batcher(fn)
        out = await b.submit(np.ones((2, 3)), PREDICT, 1.0)
        assert out["predict"].tolist() == [3.0, 3.0]

    asyncio.run(main())
    assert sizes == [2]


def test_requests_queued_while_busy_form_the_next_batch() -> None:
    sizes: list[int] = []
    gate = threading.Event()

    def fn(X, wanted):
        sizes.append(len(X))
        gate.wait(2)
        return {"predict": X[:, 0] * 10}

    async def main():
        b = _batcher(fn)
        first = asyncio.ensure_future(b.submit(np.array([[1.0]]), PREDICT, 5))
        await asyncio.sleep(0.05)  # the first batch is now running
        rest = [
            asyncio.ensure_future(b.submit(np.array([[float(i)]]), PREDICT, 5)) for i in range(2, 7)
        ]
        await asyncio.sleep(0.05)
        gate.set()
        results = await asyncio.gather(first, *rest)
        return [r["predict"].tolist() for r in results]

    assert asyncio.run(main()) == [[10.0], [20.0], [30.0], [40.0], [50.0], [60.0]]
    assert sizes == [1, 5]


def test_batches_never_exceed_max_batch_size() -> None:
    sizes: list[int] = []

    def fn(X, wanted):
        sizes.append(len(X))
        time.sleep(0.01)
        return {"predict": X[:, 0]}

    async def main():
        b = _batcher(fn, max_batch_size=4)
        await asyncio.gather(*(b.submit(np.ones((1, 1)), PREDICT, 5) for _ in range(20)))

    asyncio.run(main())
    assert max(sizes) <= 4 and sum(sizes) == 20


def test_full_queue_refuses_instead_of_growing() -> None:
    gate = threading.Event()

    def fn(X, wanted):
        gate.wait(2)
        return {"predict": X[:, 0]}

    async def main():
        b = _batcher(fn, max_batch_size=1, max_queue_rows=3)
        held = [asyncio.ensure_future(b.submit(np.ones((1, 1)), PREDICT, 5))]
        await asyncio.sleep(0.02)  # the first request is running
        held += [asyncio.ensure_future(b.submit(np.ones((1, 1)), PREDICT, 5)) for _ in range(3)]
        await asyncio.sleep(0.02)  # three more wait: the queue (3 rows) is full
        with pytest.raises(Overloaded, match="at capacity"):
            await b.submit(np.ones((1, 1)), PREDICT, 5)
        gate.set()
        await asyncio.gather(*held)

    asyncio.run(main())


def test_timeout_answers_504_without_disturbing_others() -> None:
    gate = threading.Event()

    def fn(X, wanted):
        gate.wait(2)
        return {"predict": X[:, 0]}

    async def main():
        b = _batcher(fn)
        slow = asyncio.ensure_future(b.submit(np.ones((1, 1)), PREDICT, 5))
        await asyncio.sleep(0.02)
        with pytest.raises(Timeout, match="within 50 ms"):
            await b.submit(np.ones((1, 1)) * 2, PREDICT, 0.05)
        patient = asyncio.ensure_future(b.submit(np.ones((1, 1)) * 3, PREDICT, 5))
        gate.set()
        assert (await slow)["predict"].tolist() == [1.0]
        assert (await patient)["predict"].tolist() == [3.0]

    asyncio.run(main())


def test_a_request_the_model_chokes_on_fails_alone() -> None:
    gate = threading.Event()

    def fn(X, wanted):
        gate.wait(2)
        if np.isnan(X).any():
            raise ValueError("Input contains NaN")
        return {"predict": X[:, 0]}

    async def main():
        b = _batcher(fn)
        first = asyncio.ensure_future(b.submit(np.ones((1, 1)), PREDICT, 5))
        await asyncio.sleep(0.02)
        good = asyncio.ensure_future(b.submit(np.full((1, 1), 2.0), PREDICT, 5))
        bad = asyncio.ensure_future(b.submit(np.full((1, 1), np.nan), PREDICT, 5))
        gate.set()
        assert (await first)["predict"].tolist() == [1.0]
        assert (await good)["predict"].tolist() == [2.0]
        with pytest.raises(PredictFailed, match="NaN"):
            await bad

    asyncio.run(main())


def test_only_requested_outputs_are_returned() -> None:
    def fn(X, wanted):
        out = {"predict": X[:, 0]}
        if "probabilities" in wanted:
            out["probabilities"] = np.hstack([X, 1 - X])
        return out

    async def main():
        b = _batcher(fn)
        a, c = await asyncio.gather(
            b.submit(np.ones((1, 1)), PREDICT, 1),
            b.submit(np.zeros((1, 1)), frozenset({"predict", "probabilities"}), 1),
        )
        assert set(a) == {"predict"} and c["probabilities"].tolist() == [[0.0, 1.0]]

    asyncio.run(main())
