"""What every protocol (REST, gRPC) does around a prediction, written once.

Request ids, the copy each shadow deployment gets, when decoding leaves the event loop, and the
payload-log row of a failed call.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import time
from collections.abc import Awaitable
from typing import Any

import numpy as np
import orjson

from cloche.serving.deployment import LiveDeployment, RequestMeta, log_line
from cloche.serving.router import EndpointRoute

log = logging.getLogger("cloche.serving")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# Requests over this are decoded on a thread, so that the event loop goes on answering health
# checks and small requests meanwhile (a 50 MB JSON body takes seconds to decode). Below it,
# decoding inline is cheaper than the hop to a thread (tens of microseconds).
INLINE_DECODE_BYTES = 256 * 1024
MAX_LOGGED_BYTES = 4 * 1024  # of a failed request's inputs, and of its error message
LOGGED_BYTES_PER_VALUE = 24  # what one number takes in the log's JSON, at most (-1.2345678e-300)


def request_id(given: str | None) -> str:
    """The client's request id when it is a sane one, else a new one.

    New ids are this worker's random prefix and a counter, 24 hex digits like the random ids
    they replace: unique across workers and restarts (48 random bits each), at a fraction of the
    cost of reading the OS's random source per request.
    """
    if given and REQUEST_ID.match(given):
        return given
    return f"{_ids.prefix}{next(_ids.counter):012x}"


class _Ids:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.prefix = os.urandom(6).hex()
        self.counter = itertools.count()


_ids = _Ids()
os.register_at_fork(after_in_child=_ids.reset)  # a forked worker must not repeat its parent's


def mirror_to_shadows(
    route: EndpointRoute,
    X: np.ndarray,
    outputs: frozenset[str],
    meta: RequestMeta,
    tasks: set[asyncio.Task[Any]],
) -> None:
    """Send a copy to each shadow deployment; its answer is only logged, never returned."""
    for shadow in route.shadows:
        copy = RequestMeta(meta.request_id, meta.started, meta.time_ms, True)
        work = shadow.predict(X, outputs & shadow.outputs, copy)
        task = asyncio.get_running_loop().create_task(_quietly(work))
        tasks.add(task)  # held until done, or the loop may drop it
        task.add_done_callback(tasks.discard)


async def _quietly(work: Awaitable[Any]) -> None:
    try:
        await work
    except Exception as exc:  # a shadow's failure is its own; it never reaches the client
        log.debug("shadow deployment failed: %s", exc)


def log_failure(
    deployment: LiveDeployment,
    meta: RequestMeta,
    inputs: np.ndarray | str | None,
    status: int,
    error: str,
    kind: str = "predict",
) -> None:
    """Write a failed call's row (status and error) if the call was sampled into the log.

    Its inputs and error are cut to about MAX_LOGGED_BYTES each: a failure is logged to see what
    went wrong, and a client sending 64 MB bodies that fail must not write 64 MB lines.
    """
    if deployment.payload_log is None or not meta.logged:
        return
    inputs, cut = bounded_inputs(inputs)
    error = _cut_text(error) + cut
    now = time.perf_counter()
    line = log_line(deployment.spec, meta, status, now, inputs, None, error, kind)
    deployment.payload_log.write([line])


def bounded_inputs(inputs: np.ndarray | str | None) -> tuple[np.ndarray | str | None, str]:
    """``inputs`` cut to about MAX_LOGGED_BYTES of log, and a note of the cut (or "")."""
    if inputs is None:
        return None, ""
    if isinstance(inputs, str):
        cut = _cut_text(inputs)
        return cut, "" if len(cut) == len(inputs) else " (inputs cut to 4 KiB)"
    if inputs.dtype == object:  # strings: as long as they come, so measured row by row
        rows, used = 0, 0
        while rows < len(inputs) and used <= MAX_LOGGED_BYTES:
            used += len(orjson.dumps(inputs[rows].tolist()))
            rows += 1 if used <= MAX_LOGGED_BYTES else 0
        if rows == len(inputs):
            return inputs, ""
    elif inputs.ndim == 0 or inputs.size * LOGGED_BYTES_PER_VALUE <= MAX_LOGGED_BYTES:
        return inputs, ""
    else:
        rows = MAX_LOGGED_BYTES // (max(1, inputs[0].size) * LOGGED_BYTES_PER_VALUE)
    if rows == 0:  # not even one row fits: say what it was
        return f"inputs of shape {list(inputs.shape)} ({inputs.dtype})", " (inputs not logged)"
    return inputs[:rows], f" (inputs cut to the first {rows} of {len(inputs)} rows)"


def _cut_text(text: str) -> str:
    if len(text) <= MAX_LOGGED_BYTES // 4:  # no UTF-8 character is over 4 bytes
        return text
    return text.encode()[:MAX_LOGGED_BYTES].decode("utf-8", "ignore")
