"""What every protocol (REST, gRPC) does around a prediction, written once.

Request ids, the copy each shadow deployment gets, and the payload-log row of a failed call.
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

from cloche.serving.deployment import LiveDeployment, RequestMeta, log_line
from cloche.serving.router import EndpointRoute

log = logging.getLogger("cloche.serving")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


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
    """Write a failed call's row (status and error) if the call was sampled into the log."""
    if deployment.payload_log is None or not meta.logged:
        return
    now = time.perf_counter()
    line = log_line(deployment.spec, meta, status, now, inputs, None, error, kind)
    deployment.payload_log.write([line])
