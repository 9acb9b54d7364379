"""A request with more rows than one model call takes, answered whole from pieces.

The batcher queues such a request one piece (``max_batch_size`` rows) at a time: the next piece
joins the queue's tail once the last one is answered. So a large request never holds more than
one batch's worth of the queue, small requests that arrive meanwhile are served between its
pieces (they wait one model call, not the whole request), and the queue bound keeps meaning
"requests waiting", not "the size of the largest request". The pieces share the request's
deadline, its payload-log line is written once, for the whole, and its outputs are joined in
row order: the same answer as one call on all the rows, for models that predict row by row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from cloche.serving.batcher import Job

# Queues one piece (a Job of at most max_batch_size rows) as room allows.
Admit = Callable[["Job"], None]
# Called with the whole request and its joined outputs, before it is answered (the payload log).
Answered = Callable[["Job", dict[str, np.ndarray]], None]


class LargeRequest:
    """Feeds ``whole``'s rows to the queue piece by piece and answers ``whole.future``."""

    __slots__ = ("_admit", "_answered", "_next", "_parts", "_piece_rows", "whole")

    def __init__(self, whole: Job, piece_rows: int, admit: Admit, answered: Answered | None):
        self.whole = whole
        self._piece_rows = piece_rows
        self._admit = admit
        self._answered = answered
        self._next = 0  # the first row not yet queued
        self._parts: list[dict[str, np.ndarray]] = []

    def start(self) -> None:
        self._queue_next()

    def _queue_next(self) -> None:
        whole = self.whole
        start = self._next
        stop = self._next = min(start + self._piece_rows, whole.rows)
        future: asyncio.Future[dict[str, np.ndarray]] = asyncio.get_running_loop().create_future()
        future.add_done_callback(self._piece_done)
        # No meta: pieces are not logged one by one (see _piece_done).
        # type(whole): the batcher's Job, without importing the module that imports this one.
        piece = type(whole)(
            whole.inputs[start:stop], whole.outputs, future, whole.deadline, whole.timeout_s
        )
        self._admit(piece)

    def _piece_done(self, piece: asyncio.Future[dict[str, np.ndarray]]) -> None:
        whole = self.whole
        if piece.cancelled():  # the worker is stopping: the whole request goes with its piece
            if not whole.future.done():
                whole.future.cancel()
            return
        error = piece.exception()  # (retrieved even when unused: asyncio warns of unread ones)
        if whole.future.done():  # the client is gone, or another piece failed: no more work
            return
        if error is not None:
            whole.future.set_exception(error)
            return
        self._parts.append(piece.result())
        if self._next < whole.rows:
            self._queue_next()
            return
        result = join(self._parts)
        self._parts = []
        if self._answered is not None:
            self._answered(whole, result)
        whole.future.set_result(result)


def join(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The pieces' outputs as one request's: each output's rows concatenated in order."""
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
