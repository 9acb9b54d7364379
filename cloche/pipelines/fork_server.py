"""A fork server for the process executor: one idle process forked when a run starts, which
forks each step's process from then on.

Why: forking the runner itself costs most of a step's overhead, because the runner is busy
(store writes, threads) between forks: each fork copies its page tables and then every page it
writes is copied again. The server, forked once while the run's functions already exist, sits
idle, so its forks are cheap, and the runner never forks. It has the run's functions at the
same places, so a request names one by its index; the arguments are pickled. The step's
process writes its outcome straight to a pipe of the runner's (sent with the request, as are
the log file and a pipe for its exit status, which the server writes when it reaps it).

The server keeps one process forked ahead (a spare, waiting for its step), so a step's process
is ready when the runner asks: the fork is paid while the previous step runs and is recorded.
Each spare still runs one step attempt only, and leaves.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import signal
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from cloche.lineage.context import bound, unbound
from cloche.pipelines.artifacts import Artifact

HEADER = struct.Struct(">Q")
STATUS = struct.Struct(">qi")  # pid, wait status


class ForkServer:
    """Started when made; ``spawn`` asks it for a step's process; ``close`` ends it."""

    runner_ends: ClassVar[list[socket.socket]] = []  # of every server this process started

    def __init__(
        self, functions: list[Callable[..., Any]], run_id: str | None = None, ahead: int = 1
    ) -> None:
        """``ahead``: the processes kept forked ahead, one per step the run may run at once."""
        self.run_id = run_id
        self.index = {id(f): i for i, f in enumerate(functions)}
        self.functions = functions
        self.lock = threading.Lock()  # one request and its answer at a time
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.pid = os.fork()
        if self.pid == 0:
            # Other runs' servers must see their runner's end close, not one held open here.
            for held in (self.sock, *ForkServer.runner_ends):
                held.close()
            _serve(theirs, functions, max(1, ahead))  # never returns
        theirs.close()
        ForkServer.runner_ends.append(self.sock)

    def knows(self, func: Callable[..., Any]) -> bool:
        """Whether ``func`` is one of this server's, for its run: two runs going on at once may
        share a component, and a step forked by the other run's server would die with it."""
        func, step = unbound(func)
        if step is not None and self.run_id is not None and step.run_id != self.run_id:
            return False
        return id(func) in self.index and self.functions[self.index[id(func)]] is func

    def spawn(
        self,
        func: Callable[..., Any],
        arguments: dict[str, Any],
        written: dict[str, Artifact],
        fds: list[int],
    ) -> int:
        """The pid of a process running ``func`` with ``fds`` (outcome, log, status pipes)."""
        func, step = unbound(func)  # bound again in the step's process
        body = pickle.dumps((self.index[id(func)], step, arguments, written))
        with self.lock:
            socket.send_fds(self.sock, [HEADER.pack(len(body))], fds)
            self.sock.sendall(body)
            return int(HEADER.unpack(_exactly(self.sock, HEADER.size))[0])

    def close(self) -> None:
        ForkServer.runner_ends.remove(self.sock)
        self.sock.close()  # the server leaves when its socket closes
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def _serve(sock: socket.socket, functions: list[Callable[..., Any]], ahead: int) -> None:
    statuses: dict[int, int] = {}

    def reap(*_: Any) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            fd = statuses.pop(pid, None)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.write(fd, STATUS.pack(pid, status))
                os.close(fd)

    code = 0
    try:
        gc.freeze()  # what the run's processes inherit stays out of their collections
        signal.signal(signal.SIGCHLD, reap)
        spares: list[_Spare] = []
        for _ in range(ahead):
            spares.append(_Spare.fork(sock, statuses, functions, spares))
        while True:
            header, fds, _, _ = socket.recv_fds(sock, HEADER.size, 3)
            if not header:  # the runner is gone, or done: no step of its may go on alone
                for pid in [*statuses, *(s.pid for s in spares)]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                break
            header += _exactly(sock, HEADER.size - len(header))  # a stream may split it
            request = _exactly(sock, HEADER.unpack(header)[0])
            outcome, log, status = fds
            signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])  # reap after it is known
            try:
                try:
                    pid = spares.pop(0).hand(request, [outcome, log])
                except (OSError, IndexError):  # a spare died idle (killed from outside)
                    fresh = _Spare.fork(sock, statuses, functions, spares)
                    pid = fresh.hand(request, [outcome, log])
            finally:
                os.close(outcome)
                os.close(log)
            statuses[pid] = status
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGCHLD])
            sock.sendall(HEADER.pack(pid))
            spares.append(_Spare.fork(sock, statuses, functions, spares))  # while the step runs
    except BaseException:
        code = 70
    finally:
        os._exit(code)


@dataclass
class _Spare:
    """A process forked ahead of its step, waiting on ``line`` for it: the fork is paid while
    the previous step runs and the runner records it, not while the runner waits."""

    pid: int
    line: socket.socket  # the server's end

    @classmethod
    def fork(
        cls,
        runner: socket.socket,
        statuses: dict[int, int],
        functions: list[Callable[..., Any]],
        others: list[_Spare],
    ) -> _Spare:
        """A new spare; it lets go of the ends the server holds (the runner's socket, the other
        spares' lines, the status pipes), so each of those sees its end when the server's goes."""
        line, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGCHLD])
            for held in (line, runner, *(other.line for other in others)):
                held.close()
            for fd in statuses.values():
                os.close(fd)
            _await_step(theirs, functions)  # never returns
        theirs.close()
        return cls(pid, line)

    def hand(self, request: bytes, fds: list[int]) -> int:
        """Give the spare its step (the runner's request, its outcome and log fds); its pid."""
        try:
            socket.send_fds(self.line, [HEADER.pack(len(request))], fds)
            self.line.sendall(request)
        finally:
            self.line.close()
        return self.pid


def _await_step(line: socket.socket, functions: list[Callable[..., Any]]) -> None:
    """The spare: waits for its step, runs it, leaves (also when the server leaves first)."""
    from cloche.pipelines.process_executor import child_main

    try:
        header, fds, _, _ = socket.recv_fds(line, HEADER.size, 2)
        if not header:
            os._exit(0)
        header += _exactly(line, HEADER.size - len(header))
        index, step, arguments, written = pickle.loads(_exactly(line, HEADER.unpack(header)[0]))
        line.close()
        outcome, log = fds
        func = functions[index]
        if step is not None:
            func = bound(func, step.run_id, step.step)
    except BaseException:
        os._exit(70)
    child_main(func, arguments, written, outcome, log)


def _exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the fork server is gone")
        data += chunk
    return bytes(data)
