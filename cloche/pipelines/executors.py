"""How a step's function is called: in this process (a thread, its output captured per thread),
in a process of its own forked for it (``process_executor``: a crash or a timeout kills only
it), or as a Ray task (``ray_executor``, imported only when asked for)."""

from __future__ import annotations

import contextlib
import io
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from cloche.errors import InvalidInput, StepFailed, Timeout
from cloche.pipelines import process_executor
from cloche.pipelines.artifacts import Artifact
from cloche.pipelines.outcome import MAX_LOG_CHARS, describe

EXECUTORS = ("inprocess", "process", "ray")


def check_executor(executor: str) -> None:
    """InvalidInput naming the executors, for a name that is not one."""
    if executor not in EXECUTORS:
        raise InvalidInput(f"unknown executor {executor!r}", hint=f"one of: {', '.join(EXECUTORS)}")


def call(
    executor: str,
    func: Callable[..., Any],
    arguments: dict[str, Any],
    written: dict[str, Artifact],
    *,
    timeout: float | None,
    name: str,
) -> tuple[Any, str]:
    """Call ``func``; its return value and what it printed. Raises StepFailed or Timeout."""
    if executor == "process":
        return process_executor.call(func, arguments, written, timeout=timeout, name=name)
    if executor == "ray":
        from cloche.pipelines import ray_executor

        return ray_executor.call(func, arguments, written, timeout=timeout, name=name)
    check_executor(executor)
    return _in_thread(func, arguments, timeout=timeout, name=name)


@contextlib.contextmanager
def session(
    executor: str,
    functions: list[Callable[..., Any]],
    *,
    run_id: str | None = None,
    ray_address: str | None = None,
    workers: int = 1,
) -> Iterator[None]:
    """What ``executor`` needs for a whole run of ``functions`` (a fork server, Ray connected),
    ``workers`` steps at a time; raises before any step runs."""
    if executor == "process":
        with process_executor.session(functions, run_id, workers):
            yield
    elif executor == "ray":
        from cloche.pipelines import ray_executor

        with ray_executor.session(ray_address):
            yield
    else:
        yield


# In-process: sys.stdout and sys.stderr are swapped once for streams that write to the calling
# thread's buffer while a step runs there, and to the real stream otherwise, so steps running in
# parallel threads keep their own logs.
class _PerThread(io.TextIOBase):
    def __init__(self, real: TextIO | Any) -> None:
        self.real = real
        self.local = threading.local()

    def write(self, text: str) -> int:
        target: Any = getattr(self.local, "buffer", None) or self.real
        return int(target.write(text))

    def flush(self) -> None:
        (getattr(self.local, "buffer", None) or self.real).flush()

    def __getattr__(self, name: str) -> Any:
        # The rest is the real stream's: IPython points its stream at each new cell with
        # ``sys.stdout.set_parent``, without which a notebook's later prints would be lost.
        return getattr(self.real, name)


_INSTALL = threading.Lock()


@contextlib.contextmanager
def _captured() -> Iterator[io.StringIO]:
    with _INSTALL:
        for name in ("stdout", "stderr"):
            if not isinstance(getattr(sys, name), _PerThread):
                setattr(sys, name, _PerThread(getattr(sys, name)))
        streams = [s for s in (sys.stdout, sys.stderr) if isinstance(s, _PerThread)]
    buffer = io.StringIO()
    for stream in streams:
        stream.local.buffer = buffer
    try:
        yield buffer
    finally:
        for stream in streams:
            stream.local.buffer = None


def _in_thread(
    func: Callable[..., Any], arguments: dict[str, Any], *, timeout: float | None, name: str
) -> tuple[Any, str]:
    box: dict[str, Any] = {}

    def target() -> None:
        with _captured() as log:
            try:
                box["value"] = func(**arguments)
            except BaseException as exc:
                box["error"] = exc
            box["log"] = log.getvalue()[-MAX_LOG_CHARS:]

    if timeout is None:
        target()
    else:
        # A step past its timeout is abandoned, not stopped: its thread may go on. The process
        # executor stops it for real.
        thread = threading.Thread(target=target, name=f"step-{name}", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise Timeout(
                f"step {name!r} ran past its timeout of {timeout:g} s",
                hint="with --executor process a step past its timeout is stopped",
            )
    if "error" in box:
        raise StepFailed(describe(box["error"]), log=box.get("log", ""))
    return box.get("value"), box.get("log", "")
