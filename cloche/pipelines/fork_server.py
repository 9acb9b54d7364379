"""A fork server for the process executor: one idle process forked when a run starts, which
forks each step's process from then on.

Why: forking the runner itself costs most of a step's overhead, because the runner is busy
(store writes, threads) between forks: each fork copies its page tables and then every page it
writes is copied again. The server, forked once while the run's functions already exist, sits
idle, so its forks are cheap, and the runner never forks. It has the run's functions at the
same places, so a request names one by its index; the arguments are pickled.

The server keeps one process forked ahead per worker (a spare, waiting for its step) and hands
each to the runner as soon as it is made: its pid, the runner's end of the socket the spare
waits on, and the read end of a pipe the server writes the spare's wait status to when it reaps
it. The runner gives a step straight to a spare it holds (the request, with the step's outcome
pipe and log file) and tells the server with one byte that it took one, without waiting for an
answer; the server forks the next spare while the step runs. So a step costs the runner no
round trip to the server: the server's one cost on a step's path is the CPU of its fork (about
2 ms for a 60 MB runner, which the runner's recording of the step overlaps). Each spare still
runs one step attempt only, and leaves.

When the runner goes (done, or killed), the server sees its socket close and kills every
process it forked that has not ended: no step of the run goes on alone.
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
TAKEN = b"+"  # runner to server: a spare was taken, fork the next


@dataclass
class Spare:
    """A process forked ahead of its step, as the runner holds it."""

    pid: int
    line: socket.socket  # the runner's end of the socket the spare waits on for its step
    exited: int  # a pipe, readable once the server has reaped it: its pid and wait status


class ForkServer:
    """Started when made; ``spawn`` gives a step to a spare; ``close`` ends the server."""

    # The fds the runner holds of every server it started: a server forked later lets go of
    # them, so each server sees its runner's end close, and each spare its line.
    held: ClassVar[set[int]] = set()

    def __init__(
        self, functions: list[Callable[..., Any]], run_id: str | None = None, ahead: int = 1
    ) -> None:
        """``ahead``: the processes kept forked ahead, one per step the run may run at once."""
        self.run_id = run_id
        self.index = {id(f): i for i, f in enumerate(functions)}
        self.functions = functions
        self.lock = threading.Lock()  # one spare taken at a time
        self.spares: list[Spare] = []  # announced and read, not yet given a step
        # Packets, not a stream: each spare's announcement arrives whole, with its two fds.
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.pid = os.fork()
        if self.pid == 0:
            self.sock.close()
            for fd in ForkServer.held - {0, 1, 2, theirs.fileno()}:
                with contextlib.suppress(OSError):
                    os.close(fd)
            _serve(theirs, functions, max(1, ahead))  # never returns
        theirs.close()
        ForkServer.held.add(self.sock.fileno())

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
    ) -> tuple[int, int]:
        """A spare's pid and its exit pipe (the caller's to close, with ``release``), the spare
        running ``func`` with ``fds`` (its outcome pipe and log file)."""
        func, step = unbound(func)  # bound again in the step's process
        body = pickle.dumps((self.index[id(func)], step, arguments, written))
        message = HEADER.pack(len(body)) + body
        while True:
            spare = self._take()
            try:
                sent = socket.send_fds(spare.line, [message], fds)  # one call: one wake-up
                if sent < len(message):
                    spare.line.sendall(message[sent:])
            except OSError:  # it died idle (killed from outside): the next one
                release(spare.exited)
                continue
            finally:
                ForkServer.held.discard(spare.line.fileno())
                spare.line.close()  # its step is in; the server watches it from here
            return spare.pid, spare.exited

    def _take(self) -> Spare:
        with self.lock:
            spare = self.spares.pop(0) if self.spares else self._announced()
            self.sock.send(TAKEN)  # no answer awaited: the next spare is read when needed
        return spare

    def _announced(self) -> Spare:
        """The next spare the server forks (waiting for it if it is not made yet)."""
        header, fds, _, _ = socket.recv_fds(self.sock, HEADER.size, 2)
        if len(header) != HEADER.size or len(fds) != 2:
            for fd in fds:
                os.close(fd)
            raise ConnectionError("the fork server is gone")
        ForkServer.held.update(fds)
        return Spare(int(HEADER.unpack(header)[0]), socket.socket(fileno=fds[0]), fds[1])

    def close(self) -> None:
        with self.lock:
            for spare in self.spares:  # each sees its line close and leaves
                ForkServer.held.discard(spare.line.fileno())
                spare.line.close()
                release(spare.exited)
            self.spares.clear()
        ForkServer.held.discard(self.sock.fileno())
        self.sock.close()  # the server leaves when its socket closes
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def release(fd: int) -> None:
    """Close a spare's exit pipe (from ``spawn``)."""
    ForkServer.held.discard(fd)
    os.close(fd)


def _serve(sock: socket.socket, functions: list[Callable[..., Any]], ahead: int) -> None:
    statuses: dict[int, int] = {}  # every process forked and not yet reaped: its exit pipe

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
                with contextlib.suppress(OSError):  # the runner may have closed its end
                    os.write(fd, STATUS.pack(pid, status))
                os.close(fd)

    code = 0
    try:
        gc.freeze()  # what the run's processes inherit stays out of their collections
        signal.signal(signal.SIGCHLD, reap)
        for _ in range(ahead):
            _fork_spare(sock, statuses, functions)
        while sock.recv(16):  # a spare taken: fork the next while its step runs
            _fork_spare(sock, statuses, functions)
    except BaseException:
        code = 70
    finally:
        # The runner is gone, or done (or this server failed): no step may go on alone.
        for pid in list(statuses):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        os._exit(code)


def _fork_spare(
    runner: socket.socket, statuses: dict[int, int], functions: list[Callable[..., Any]]
) -> None:
    """Fork a spare and hand it to the runner. The spare lets go of what the server holds (the
    runner's socket, the other spares' exit pipes), so each of those sees its end when the
    server's goes."""
    line, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    exited, status = os.pipe()
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])  # reaped once its pipe is known
    try:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGCHLD])
            line.close()
            runner.close()
            for fd in (exited, status, *statuses.values()):
                os.close(fd)
            _await_step(theirs, functions)  # never returns
        statuses[pid] = status
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGCHLD])
    theirs.close()
    try:
        socket.send_fds(runner, [HEADER.pack(pid)], [line.fileno(), exited])
    finally:
        line.close()
        os.close(exited)


def _await_step(line: socket.socket, functions: list[Callable[..., Any]]) -> None:
    """The spare: waits for its step, runs it, leaves (also when the runner leaves first)."""
    from cloche.pipelines.process_executor import child_main

    try:
        data, fds, _, _ = socket.recv_fds(line, 1 << 16, 2)
        if not data:
            os._exit(0)
        while len(data) < HEADER.size:
            data += _exactly(line, HEADER.size - len(data))
        size = HEADER.unpack_from(data)[0]
        body = data[HEADER.size :] + _exactly(line, size - (len(data) - HEADER.size))
        index, step, arguments, written = pickle.loads(body)
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
            raise ConnectionError("the runner is gone")
        data += chunk
    return bytes(data)
