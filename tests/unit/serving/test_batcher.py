import asyncio
import time

import numpy as np
import pytest

from cloche.errors import InvalidInput, Overloaded, PredictFailed, Timeout
from cloche.serving import batcher as batcher_module
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

    async def main():
        b = _batcher(fn)
        arrivals: list[asyncio.Future] = []

        def more() -> None:
            # Requests that arrive while the first batch runs.
            for i in range(2, 7):
                arrivals.append(asyncio.ensure_future(b.submit(np.array([[float(i)]]), PREDICT, 5)))

        def fn_impl(X, wanted):
            if not sizes:
                asyncio.get_running_loop().call_soon(more)
            sizes.append(len(X))
            return {"predict": X[:, 0] * 10}

        fns.append(fn_impl)
        first = await b.submit(np.array([[1.0]]), PREDICT, 5)
        await asyncio.sleep(0.05)
        rest = await asyncio.gather(*arrivals)
        return [r["predict"].tolist() for r in [first, *rest]]

    fns: list = []

    def fn(X, wanted):
        return fns[0](X, wanted)

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
    def fn(X, wanted):
        return {"predict": X[:, 0]}

    async def main():
        b = _batcher(fn, max_queue_rows=3)
        results = await asyncio.gather(
            *(b.submit(np.ones((1, 1)), PREDICT, 5) for _ in range(4)), return_exceptions=True
        )
        refused = [r for r in results if isinstance(r, Overloaded)]
        assert len(refused) == 1 and "is full (3 rows waiting, at most 3)" in str(refused[0])
        assert "add workers" in refused[0].hint
        assert (await b.submit(np.ones((1, 1)), PREDICT, 5))["predict"].tolist() == [1.0]

    asyncio.run(main())


def test_timeout_answers_504_without_disturbing_others() -> None:
    def fn(X, wanted):
        time.sleep(0.2 if X[0, 0] == 1 else 0)
        return {"predict": X[:, 0]}

    async def main():
        b = _batcher(fn, max_batch_size=1)
        slow, late = await asyncio.gather(
            b.submit(np.ones((1, 1)), PREDICT, 5),
            b.submit(np.ones((1, 1)) * 2, PREDICT, 0.05),
            return_exceptions=True,
        )
        assert slow["predict"].tolist() == [1.0]
        assert isinstance(late, Timeout) and "within 50 ms" in str(late)
        assert (await b.submit(np.ones((1, 1)) * 3, PREDICT, 5))["predict"].tolist() == [3.0]

    asyncio.run(main())


def test_a_request_the_model_chokes_on_fails_alone() -> None:
    def fn(X, wanted):
        if (X == 13).any():
            raise ValueError("unlucky row")
        return {"predict": X[:, 0]}

    async def main():
        b = _batcher(fn)
        good, bad, other = await asyncio.gather(
            b.submit(np.full((1, 1), 2.0), PREDICT, 5),
            b.submit(np.full((1, 1), 13.0), PREDICT, 5),
            b.submit(np.full((1, 1), 3.0), PREDICT, 5),
            return_exceptions=True,
        )
        assert good["predict"].tolist() == [2.0] and other["predict"].tolist() == [3.0]
        assert isinstance(bad, PredictFailed) and "unlucky row" in str(bad)

    asyncio.run(main())


def test_missing_values_a_model_cannot_take_are_the_clients_mistake() -> None:
    def fn(X, wanted):
        if np.isnan(X).any():
            raise ValueError("Input X contains NaN.")
        return {"predict": X[:, 0]}

    async def main():
        b = _batcher(fn)
        with pytest.raises(InvalidInput, match="cannot take missing or non-finite values"):
            await b.submit(np.full((1, 1), np.nan), PREDICT, 5)

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


def _burst(b: AdaptiveBatcher, per_turn: list[int]) -> asyncio.Future:
    """Requests arriving over successive loop turns, ``per_turn[i]`` of them in turn i, as
    clients answering the last batch's replies do; resolves to their answers."""
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Future] = []
    done = loop.create_future()

    def arrive(turn: int) -> None:
        for _ in range(per_turn[turn]):
            tasks.append(asyncio.ensure_future(b.submit(np.ones((1, 1)), PREDICT, 5)))
        if turn + 1 < len(per_turn):
            loop.call_soon(arrive, turn + 1)
        else:
            asyncio.gather(*tasks).add_done_callback(lambda f: done.set_result(f.result()))

    arrive(0)
    return done


def test_a_burst_read_over_several_loop_turns_forms_one_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sizes: list[int] = []
    # The batch waits up to one model call's time (at most MAX_FILL_S) for the burst: both are
    # made large here, so that four loop turns fit in the wait even on a loaded machine.
    monkeypatch.setattr(batcher_module, "MAX_FILL_S", 1.0)

    def fn(X, wanted):
        sizes.append(len(X))
        time.sleep(0.2)
        return {"predict": X[:, 0]}

    async def main():
        b = _batcher(fn, max_batch_size=64)
        await b.submit(np.ones((1, 1)), PREDICT, 5)  # a first call: the model's cost is known
        answers = await _burst(b, [2, 3, 3, 2])
        assert len(answers) == 10

    asyncio.run(main())
    assert sizes == [1, 10]


def test_a_batch_fills_no_further_than_max_batch_size_while_requests_keep_coming(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sizes: list[int] = []
    monkeypatch.setattr(batcher_module, "MAX_FILL_S", 1.0)  # as above: room for a loaded machine

    def fn(X, wanted):
        sizes.append(len(X))
        time.sleep(0.05)
        return {"predict": X[:, 0]}

    async def main():
        b = _batcher(fn, max_batch_size=4)
        await b.submit(np.ones((1, 1)), PREDICT, 5)
        await _burst(b, [2] * 8)

    asyncio.run(main())
    assert sizes[0] == 1 and sum(sizes) == 17 and max(sizes) <= 4 and sizes.count(4) >= 3


def test_a_lone_request_does_not_wait_for_a_batch_to_fill() -> None:
    turns: list[int] = []

    def fn(X, wanted):
        turns.append(ticks)
        time.sleep(0.002)
        return {"predict": X[:, 0]}

    ticks = 0

    async def main():
        nonlocal ticks
        loop = asyncio.get_running_loop()
        b = _batcher(fn)
        await b.submit(np.ones((1, 1)), PREDICT, 5)

        def tick() -> None:
            nonlocal ticks
            ticks += 1
            if ticks < 50:
                loop.call_soon(tick)

        ticks = 0
        loop.call_soon(tick)
        await b.submit(np.ones((1, 1)), PREDICT, 5)

    asyncio.run(main())
    assert turns[1] <= 1  # run on the first loop turn after it queued
