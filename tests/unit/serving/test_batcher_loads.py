"""A batch whose model is not resident: loaded off the loop, failures answered, no reload loops."""

import asyncio

import numpy as np
import pytest

from cloche.errors import Unavailable
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


def test_requests_a_hung_load_outlasts_get_503_naming_the_model_at_their_deadline() -> None:
    import threading

    release = threading.Event()
    loaded = threading.Event()

    def load() -> None:
        release.wait(30)  # hangs until the test ends it
        loaded.set()

    async def main():
        b = _batcher(
            lambda X, wanted: {"predict": X.sum(axis=1)},
            resident=loaded.is_set,
            load=load,
            name="churn/churn:3",
        )
        first = asyncio.ensure_future(b.submit(np.ones((1, 2)), PREDICT, 0.05))
        with pytest.raises(Unavailable) as late:
            await first
        # A request that arrives while the load still hangs, after the first was answered.
        with pytest.raises(Unavailable):
            await b.submit(np.ones((1, 2)), PREDICT, 0.05)
        assert not loaded.is_set(), "the requests were answered before the load ended"
        assert b.queued_rows == 0
        release.set()
        out = await b.submit(np.ones((1, 2)), PREDICT, 30)  # served once the load is done
        assert out["predict"].tolist() == [2.0]
        return late.value

    error = asyncio.run(main())
    assert error.message.startswith("model churn/churn:3 is still loading")
    assert "longer than this request's timeout of 50 ms" in error.message
    assert "--timeout-ms" in (error.hint or "")


def test_a_request_with_a_later_deadline_keeps_waiting_for_the_load() -> None:
    import threading

    release = threading.Event()

    async def main():
        b = _batcher(
            lambda X, wanted: {"predict": X.sum(axis=1)},
            resident=release.is_set,
            load=lambda: release.wait(30),
        )
        short = asyncio.ensure_future(b.submit(np.ones((1, 2)), PREDICT, 0.05))
        long = asyncio.ensure_future(b.submit(np.ones((1, 2)), PREDICT, 30))
        with pytest.raises(Unavailable):
            await short
        assert not long.done()
        release.set()
        assert (await long)["predict"].tolist() == [2.0]

    asyncio.run(main())
