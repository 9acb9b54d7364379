"""The process executor: a process forked for each step attempt, so a crash or a timeout kills
only it. Forked, not spawned: the child has the step's function already (a file's, or a
notebook's), nothing is pickled but its arguments' results on the way back.

Kept lean because it runs once per step (about 10 ms a step less than through
``multiprocessing``): a bare ``os.fork`` and a pipe; the child freezes the objects it inherited
out of its garbage collector (a collection would otherwise touch, and so copy, every page of the
parent's heap) and leaves with ``os._exit`` as soon as its result is written.
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import pickle
import select
import signal
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from cloche.errors import StepFailed, Timeout
from cloche.pipelines.artifacts import Artifact

MAX_LOG_CHARS = 64_000
FRAME = struct.Struct(">Q")  # the outcome's length, before it


def call(
    func: Callable[..., Any],
    arguments: dict[str, Any],
    written: dict[str, Artifact],
    *,
    timeout: float | None,
    name: str,
) -> tuple[Any, str]:
    """Call ``func`` in a child process; its return value and what it printed."""
    with tempfile.TemporaryFile("w+") as log:
        receive, send = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(receive)
            _child_main(func, arguments, written, send, log.fileno())
        os.close(send)
        try:
            payload = _read(receive, pid, timeout)
        finally:
            os.close(receive)
        status = os.waitpid(pid, 0)[1]
        log.seek(0)
        text = log.read()[-MAX_LOG_CHARS:]
    if payload is None:
        raise Timeout(f"step {name!r} ran past its timeout of {timeout:g} s and was stopped")
    if not payload:
        code = os.waitstatus_to_exitcode(status)
        raise StepFailed(f"step {name!r}'s process exited with code {code}", log=text)
    kind, value, metadata = pickle.loads(payload)
    if kind == "error":
        raise StepFailed(value, log=text)
    for artifact_name, meta in metadata.items():
        written[artifact_name].metadata = meta
    return value, text


def _read(fd: int, pid: int, timeout: float | None) -> bytes | None:
    """The child's pickled outcome (empty if it died without one); None once past the timeout,
    the child then killed. The outcome is framed by its length, and the child's exit watched
    through a pidfd, because a sibling step forked meanwhile holds this pipe's write end too:
    its end of file may come long after this child is gone."""
    deadline = None if timeout is None else time.monotonic() + timeout
    watched, pidfd = [fd], _pidfd(pid)
    if pidfd is not None:
        watched.append(pidfd)
    data = bytearray()
    try:
        while (whole := _unframe(data)) is None:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select(watched, [], [], left)
            if not ready:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                return None
            if fd not in ready:  # the child has exited: what it wrote is in the pipe
                os.set_blocking(fd, False)
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                chunk = b""
            if not chunk:
                return b""
            data += chunk
        return whole
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux >= 5.3: end of file alone tells a death
        return None


def _unframe(data: bytearray) -> bytes | None:
    if len(data) < FRAME.size:
        return None
    (size,) = FRAME.unpack_from(data)
    return bytes(data[FRAME.size : FRAME.size + size]) if len(data) >= FRAME.size + size else None


def _child_main(
    func: Callable[..., Any],
    arguments: dict[str, Any],
    written: dict[str, Artifact],
    send: int,
    log_fd: int,
) -> None:
    code = 0
    try:
        gc.freeze()
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False), line_buffering=True)
        sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", closefd=False), line_buffering=True)
        try:
            value = func(**arguments)
            outcome = ("ok", value, {n: a.metadata for n, a in written.items()})
        except BaseException as exc:
            from cloche.pipelines.executors import describe

            outcome = ("error", describe(exc), {})
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            payload = pickle.dumps(outcome)
        except Exception as exc:
            payload = pickle.dumps(
                ("error", f"the step's result could not be sent back: {exc}", {})
            )
        with open(send, "wb") as pipe:
            pipe.write(FRAME.pack(len(payload)) + payload)
    except BaseException:
        code = 70  # the parent reports the exit code; nothing here may raise past os._exit
    finally:
        os._exit(code)
