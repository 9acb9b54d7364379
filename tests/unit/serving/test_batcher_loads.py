"""A batch whose model is not resident: loaded off the loop, failures answered, no reload loops."""

import asyncio

import numpy as np
import pytest

from cloche.serving.batcher import AdaptiveBatcher

PREDICT = frozenset({"predict"})


def _batcher(fn, **kw) -> AdaptiveBatcher:
    opts = {"max_batch_size": 8, "max_queue_rows": 100, "name": "t"} | kw
    return AdaptiveBatcher(fn, **opts)


def test_a_model_not_resident_loads_on_a_thread_while_the_loop_keeps_serving() -> None:
    import threading

    loaded = threading.Event()
    release = threading.Event()
    sizes: list[int] = []

    def load() -> None:
        release.wait(5)  # a slow load: the loop must not wait for it
        loaded.set()

    def fn(X, wanted):
        assert loaded.is_set(), "the batch ran before its model was loaded"
        sizes.append(len(X))
        return {"predict": X.sum(axis=1)}

    async def main():
        b = _batcher(fn, resident=loaded.is_set, load=load)
        first = asyncio.ensure_future(b.submit(np.ones((1, 2)), PREDICT, 5))
        second = asyncio.ensure_future(b.submit(np.ones((1, 2)), PREDICT, 5))
        for _ in range(20):  # the loop turns while the load is under way
            await asyncio.sleep(0)
        assert not first.done() and not second.done()
        release.set()
        answers = await asyncio.gather(first, second)
        assert [a["predict"].tolist() for a in answers] == [[2.0], [2.0]]

    asyncio.run(main())
    assert sizes == [2]  # both waited for the one load and ran as one batch


def test_a_failed_load_answers_the_waiting_requests_with_its_error_and_the_next_retries() -> None:
    from cloche.errors import Unavailable

    attempts: list[int] = []

    def load() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise Unavailable("churn:3 could not be loaded: the file is damaged")

    async def main():
        b = _batcher(
            lambda X, wanted: {"predict": X.sum(axis=1)},
            resident=lambda: len(attempts) >= 2,
            load=load,
        )
        with pytest.raises(Unavailable, match="churn:3 could not be loaded"):
            await b.submit(np.ones((1, 2)), PREDICT, 5)
        out = await b.submit(np.ones((1, 2)), PREDICT, 5)  # the load is tried again
        assert out["predict"].tolist() == [2.0]

    asyncio.run(main())
    assert len(attempts) == 2


def test_a_model_evicted_as_soon_as_it_loads_still_answers_without_loading_again_and_again() -> (
    None
):
    loads: list[int] = []

    async def main():
        # Never resident: a model larger than the budget is evicted when its load's pin ends.
        b = _batcher(
            lambda X, wanted: {"predict": X.sum(axis=1)},
            resident=lambda: False,
            load=lambda: loads.append(1),
        )
        out = await b.submit(np.ones((1, 2)), PREDICT, 5)
        assert out["predict"].tolist() == [2.0]

    asyncio.run(main())
    assert loads == [1]
