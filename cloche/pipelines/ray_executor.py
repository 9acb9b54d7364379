"""The Ray executor: each step attempt is one Ray task on the cluster the server's settings name
(``batch.ray_address``, the one batch's Ray engine uses), else on a Ray started here.

Ray only calls the step's function and hands back its result, its artifacts' metadata and what
it printed: the run's state, its attempts and retries stay in cloche's store, kept by the runner
as for the other executors (Ray's own task retries are off). A task past its timeout is
cancelled (its worker killed); a worker that dies fails only its step.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import sys
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

from cloche.errors import MissingDependency, StepFailed, Unavailable
from cloche.pipelines.artifacts import Artifact
from cloche.pipelines.outcome import MAX_LOG_CHARS, outcome_of, past_timeout, settle

LOCAL_OBJECT_STORE_BYTES = 128 * 2**20  # step arguments and results only
CONNECT_SECONDS = 5.0
HINT = (
    "start the cluster (`ray start --head`), correct the server's CLOCHE_BATCH__RAY_ADDRESS, "
    "or run with --executor inprocess or process"
)


@contextlib.contextmanager
def session(address: str | None) -> Iterator[None]:
    """Ray connected for a run: the cluster at ``address``, else a local Ray (shut down after
    the run if started here). Raises Unavailable, before any step, if it cannot be reached."""
    ray = _import_ray()
    started = _connect(ray, address)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def call(
    func: Callable[..., Any],
    arguments: dict[str, Any],
    written: dict[str, Artifact],
    *,
    timeout: float | None,
    name: str,
) -> tuple[Any, str]:
    """Call ``func`` as a Ray task; its return value and what it printed."""
    ray = _import_ray()
    _ship_by_value(func)
    ref = _remote_step(ray).options(name=f"step-{name}").remote(func, arguments, list(written))
    try:  # one call to Ray, not a wait and then a get: it is paid on every step
        kind, value, metadata, log = ray.get(ref, timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        ray.cancel(ref, force=True)
        raise past_timeout(name, timeout) from None
    except Exception as exc:  # the worker died (os._exit, a signal, out of memory) or was lost
        raise StepFailed(f"step {name!r}'s Ray task failed: {type(exc).__name__}: {exc}") from None
    return settle((kind, value, metadata), written, log)


def _step_main(
    func: Callable[..., Any], arguments: dict[str, Any], written: list[str]
) -> tuple[str, Any, dict[str, Any], str]:
    """Runs in a Ray worker, one task at a time: its printed output is this task's log. The
    output artifacts' metadata is read from ``arguments``, the copies the function was given."""
    buffer = io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = buffer
    try:
        outcome = outcome_of(func, arguments, {n: arguments[n] for n in written})
    finally:
        sys.stdout, sys.stderr = saved
    return (*outcome, buffer.getvalue()[-MAX_LOG_CHARS:])


@cache
def _remote_step(ray: Any) -> Any:
    # max_retries=0: a retry is the runner's, recorded as an attempt, never Ray's silently.
    return ray.remote(max_retries=0, num_cpus=1)(_step_main)


def _ship_by_value(func: Callable[..., Any]) -> None:
    """A step's function from a module the cluster's workers may not have (a test's, a user's
    package) travels by value; a file's or a notebook's already does, and cloche's own
    components are imported there."""
    module = sys.modules.get(func.__module__)
    if module is None or func.__module__.split(".")[0] in ("cloche", "__main__"):
        return
    from ray import cloudpickle

    with contextlib.suppress(ValueError):  # already registered
        cloudpickle.register_pickle_by_value(module)


def _connect(ray: Any, address: str | None) -> bool:
    """Join the cluster at ``address``, or start a local Ray; True if started here."""
    if ray.is_initialized():
        return False
    if address:
        _check_reachable(address)
        try:
            ray.init(address=address, log_to_driver=False)
        except Exception as exc:
            raise Unavailable(
                f"the Ray cluster at {address} could not be joined: {exc}", hint=HINT
            ) from None
        return True
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    ray.init(
        num_cpus=cores or 1,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=LOCAL_OBJECT_STORE_BYTES,
    )
    return True


def _check_reachable(address: str) -> None:
    """Fail in seconds, not after Ray's own minute of retries, when nothing listens there."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise Unavailable(
            f"the Ray address {address!r} is not HOST:PORT or ray://HOST:PORT", hint=HINT
        )
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as exc:
        raise Unavailable(
            f"the Ray cluster at {address} cannot be reached: {exc.strerror or exc}", hint=HINT
        ) from None


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise MissingDependency(
            "--executor ray needs Ray, which is not installed",
            hint="pip install 'cloche[ray]', or run with --executor inprocess or process",
        ) from exc
    return ray
