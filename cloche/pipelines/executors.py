"""How a step's function is called: in this process (a thread, its output captured per thread),
or in a process of its own forked for it (isolation: a crash or a timeout kills only it)."""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from cloche.errors import ClocheError, InvalidInput, StepFailed, Timeout
from cloche.pipelines.artifacts import Artifact

EXECUTORS = ("inprocess", "process")
MAX_LOG_CHARS = 64_000


def check_executor(executor: str) -> None:
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
        return _in_child(func, arguments, written, timeout=timeout, name=name)
    if executor != "inprocess":
        raise InvalidInput(f"unknown executor {executor!r}", hint=f"one of: {', '.join(EXECUTORS)}")
    return _in_thread(func, arguments, timeout=timeout, name=name)


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
        raise StepFailed(_describe(box["error"]), log=box.get("log", ""))
    return box.get("value"), box.get("log", "")


def _in_child(
    func: Callable[..., Any],
    arguments: dict[str, Any],
    written: dict[str, Artifact],
    *,
    timeout: float | None,
    name: str,
) -> tuple[Any, str]:
    # fork: the child has the step's function already (a file's, or a notebook's), nothing
    # pickled; it runs only the function and sends back its result.
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    with tempfile.TemporaryFile("w+") as log:
        child = context.Process(
            target=_child_main, args=(func, arguments, written, send, log.fileno()), daemon=True
        )
        child.start()
        send.close()
        ready = receive.poll(timeout)
        outcome = None
        if ready:
            with contextlib.suppress(EOFError):  # the child died without a word
                outcome = receive.recv()
        elif child.is_alive():
            os.kill(child.pid or 0, signal.SIGKILL)
        child.join(5)
        log.seek(0)
        text = log.read()[-MAX_LOG_CHARS:]
    receive.close()
    if outcome is None and not ready:
        raise Timeout(f"step {name!r} ran past its timeout of {timeout:g} s and was stopped")
    if outcome is None:
        raise StepFailed(f"step {name!r}'s process exited with code {child.exitcode}", log=text)
    kind, value, metadata = outcome
    if kind == "error":
        raise StepFailed(value, log=text)
    for artifact_name, meta in metadata.items():
        written[artifact_name].metadata = meta
    return value, text


def _child_main(
    func: Callable[..., Any],
    arguments: dict[str, Any],
    written: dict[str, Artifact],
    send: Any,
    log_fd: int,
) -> None:
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False), line_buffering=True)
    sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", closefd=False), line_buffering=True)
    try:
        value = func(**arguments)
        outcome = ("ok", value, {n: a.metadata for n, a in written.items()})
    except BaseException as exc:
        outcome = ("error", _describe(exc), {})
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        send.send(outcome)
    except Exception as exc:
        send.send(("error", f"the step's result could not be sent back: {exc}", {}))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ClocheError):
        return f"{exc.code}: {exc.message}" + (f" ({exc.hint})" if exc.hint else "")
    frames = traceback.format_exception(exc)
    return "".join(frames[-3:]).strip()[-4000:]
