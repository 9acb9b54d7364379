import asyncio
import time

import numpy as np
import pytest

from cloche.errors import (
    InvalidInput,
    Overloaded,
    PayloadTooLarge,
    PredictFailed,
    Timeout,
    Unavailable,
)
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
