"""Idle and slow clients cannot hold a worker: `cloche up`'s connection cap and read deadlines.

Raw sockets over loopback, against a real server configured as `cloche up` configures uvicorn,
with short deadlines so each case is over in seconds. Every socket has a timeout.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest

from cloche.config import ServingSettings, Settings
from cloche.serving.connections import uvicorn_options
from tests.integration.conftest import LiveServer, run_server

LIMIT = 6
DEADLINE_S = 2.0
WAIT_S = 10.0  # generous: the deadline plus a loaded CI machine's slack


@pytest.fixture
def guarded(settings: Settings) -> Iterator[LiveServer]:
    serving = ServingSettings(
        max_connections=LIMIT, header_timeout_seconds=DEADLINE_S, read_timeout_seconds=DEADLINE_S
    )
    with run_server(settings, **uvicorn_options(serving)) as server:
        yield server


def _connect(server: LiveServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=WAIT_S)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or WAIT_S passes)."""
    got, deadline = b"", time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        chunk = sock.recv(4096)
        if not chunk:
            return got
        got += chunk
    raise AssertionError(f"the server kept the connection open; sent {got!r}")


def test_idle_connections_over_the_limit_get_503_then_are_closed(guarded: LiveServer) -> None:
    with ExitStack() as stack:
        idle = [stack.enter_context(_connect(guarded)) for _ in range(LIMIT)]
        time.sleep(0.2)  # let the server accept them all
        busy = httpx.get(f"{guarded.url}/v2/health/live", timeout=WAIT_S)
        assert busy.status_code == 503  # a clear "busy", not a hang
        for sock in idle:  # closed silently: they never asked for anything
            assert _read_until_closed(sock) == b""
    served = httpx.get(f"{guarded.url}/v2/health/live", timeout=WAIT_S)
    assert served.status_code == 200


def test_headers_sent_byte_by_byte_are_cut_off_with_408(guarded: LiveServer) -> None:
    request = b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200
    with _connect(guarded) as sock:
        started = time.monotonic()
        with pytest.raises(OSError):  # the server closes while we are still "typing"
            for byte in request:
                sock.sendall(bytes([byte]))
                time.sleep(0.05)
        assert time.monotonic() - started < WAIT_S
        assert _read_until_closed(sock).startswith(b"HTTP/1.1 408")


def test_a_declared_body_that_never_comes_is_cut_off_with_408(guarded: LiveServer) -> None:
    head = (
        b"POST /v1/models/churn:feedback HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )
    with _connect(guarded) as sock:
        sock.sendall(head)
        assert _read_until_closed(sock).startswith(b"HTTP/1.1 408")


def test_a_slow_but_steady_body_is_read_whole(guarded: LiveServer) -> None:
    body = b'{"labels": []}'
    head = (
        b"POST /v1/models/churn:feedback HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with _connect(guarded) as sock:
        sock.sendall(head)
        for i in range(0, len(body), 5):  # three pieces, each within the deadline of the last
            time.sleep(DEADLINE_S / 2)
            sock.sendall(body[i : i + 5])
        answer = _read_until_closed(sock)
    assert not answer.startswith(b"HTTP/1.1 408")
    assert answer.startswith(b"HTTP/1.1 ")
