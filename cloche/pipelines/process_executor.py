"""The process executor: a process of its own for each step attempt, so a crash or a timeout
kills only it. Forked, not spawned: the child has the step's function already (a file's, or a
notebook's); only its result comes back pickled.

During a run the steps' processes come from the run's fork server (``fork_server``), forked
once when the run starts, so the busy runner never forks; elsewhere (or when the arguments do not
pickle) a step is forked from here. Kept lean because it runs once per step: a bare fork and a
pipe; the child freezes the objects it inherited out of its garbage collector (a collection
would touch, and so copy, every page of the heap) and leaves with ``os._exit`` as soon as its
result is written.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from cloche.errors import StepFailed
from cloche.pipelines.artifacts import Artifact
from cloche.pipelines.fork_server import STATUS, ForkServer, release
from cloche.pipelines.outcome import MAX_LOG_CHARS, outcome_of, past_timeout, settle

FRAME = struct.Struct(">Q")  # the outcome's length, before it


_SERVERS: list[ForkServer] = []  # one per run going on in this process


@contextlib.contextmanager
def session(
    functions: list[Callable[..., Any]], run_id: str | None = None, workers: int = 1
) -> Iterator[None]:
    """A fork server for a run's functions while it lasts (none where it cannot start: then
    each step is forked from here), a process forked ahead for each of ``workers``."""
    try:
        server: ForkServer | None = ForkServer(functions, run_id, ahead=workers)
    except (AttributeError, OSError):  # no fd passing on this platform
        server = None
    if server is not None:
        _SERVERS.append(server)
    try:
        yield
    finally:
        if server is not None:
            _SERVERS.remove(server)
            server.close()


@dataclass
class _Child:
    pid: int
    exited: int | None  # readable once the process has exited (a pidfd, the server's pipe)
    forked_here: bool

    def wait_status(self, needed: bool) -> int:
        """Its wait status (-1 when unknown or not needed), its fds closed, it reaped if ours."""
        try:
            if self.forked_here:
                return os.waitpid(self.pid, 0)[1]
            if not needed or self.exited is None:
                return -1  # the server reaps it
            data = os.read(self.exited, STATUS.size)
            return STATUS.unpack(data)[1] if len(data) == STATUS.size else -1
        finally:
            if self.forked_here and self.exited is not None:
                os.close(self.exited)
            elif self.exited is not None:
                release(self.exited)


def call(
    func: Callable[..., Any],
    arguments: dict[str, Any],
    written: dict[str, Artifact],
    *,
    timeout: float | None,
    name: str,
) -> tuple[Any, str]:
    """Call ``func`` in a child process; its return value and what it printed."""
    log = _log_file()
    try:
        receive, send = os.pipe()
        try:
            child = _start(func, arguments, written, send, log)
        finally:
            os.close(send)
        try:
            payload = _read(receive, child, timeout)
        finally:
            os.close(receive)
        status = child.wait_status(needed=payload == b"")
        text = _read_log(log)
    finally:
        os.close(log)
    if payload is None:
        raise past_timeout(name, timeout)
    if not payload:
        code = os.waitstatus_to_exitcode(status) if status >= 0 else "unknown"
        raise StepFailed(f"step {name!r}'s process exited with code {code}", log=text)
    return settle(pickle.loads(payload), written, text)


def _start(
    func: Callable[..., Any],
    arguments: dict[str, Any],
    written: dict[str, Artifact],
    send: int,
    log: int,
) -> _Child:
    """The step's process, from the run's fork server when there is one, else forked here."""
    server = next((s for s in _SERVERS if s.knows(func)), None)
    if server is not None:
        try:
            pid, exited = server.spawn(func, arguments, written, [send, log])
            return _Child(pid, exited, forked_here=False)
        except (OSError, pickle.PicklingError, AttributeError, TypeError):
            pass  # arguments that do not pickle, a server gone: fork here
    pid = os.fork()
    if pid == 0:  # the child: never returns
        child_main(func, arguments, written, send, log)
    return _Child(pid, _pidfd(pid), forked_here=True)


def _read(fd: int, child: _Child, timeout: float | None) -> bytes | None:
    """The child's pickled outcome (empty if it died without one); None once past the timeout,
    the child then killed. The outcome is framed by its length, and the child's exit watched
    apart, because a sibling step forked meanwhile may hold this pipe's write end too: its end
    of file may come long after this child is gone."""
    deadline = None if timeout is None else time.monotonic() + timeout
    watched = [fd] if child.exited is None else [fd, child.exited]
    data = bytearray()
    while (whole := _unframe(data)) is None:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select(watched, [], [], left)
        if not ready:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
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


def _log_file() -> int:
    """An fd for the step's printed output: a file in memory where Linux has them (no
    directory entry made and removed per step), else an unnamed temporary file."""
    try:
        return os.memfd_create("cloche-step-log", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        with tempfile.TemporaryFile() as file:
            return os.dup(file.fileno())  # the file goes when the dup is closed


def _read_log(fd: int) -> str:
    """The end of what the step printed (MAX_LOG_CHARS characters at most)."""
    size = os.fstat(fd).st_size
    if size == 0:
        return ""
    start = max(0, size - 4 * MAX_LOG_CHARS)  # a character is at most 4 bytes in UTF-8
    data = os.pread(fd, size - start, start)
    return data.decode("utf-8", "replace")[-MAX_LOG_CHARS:]


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


def child_main(
    func: Callable[..., Any],
    arguments: dict[str, Any],
    written: dict[str, Artifact],
    send: int,
    log_fd: int,
) -> None:
    """The step's process: runs ``func``, writes its outcome to ``send``, leaves."""
    code = 0
    try:
        gc.freeze()
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False), line_buffering=True)
        sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", closefd=False), line_buffering=True)
        outcome = outcome_of(func, arguments, written)
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
