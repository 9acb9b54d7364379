"""A client that declares a huge body and keeps sending it while it waits for the answer.

httpx writes a whole body before it reads the response, so it cannot show that a server
answers early; this one writes from a thread and reads on the caller's.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

CHUNK = b"\x80" * (256 * 1024)


@dataclass(frozen=True)
class EarlyAnswer:
    status: int
    body: bytes
    seconds: float  # from the first byte sent to the whole answer read
    sent: int  # body bytes written before the answer came


def post_huge_body(
    url: str, *, declared: int, content_type: str, headers: dict[str, str] | None = None
) -> EarlyAnswer:
    """POST to ``url`` declaring ``declared`` bytes, streaming until the server answers."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=5)
    lines = [
        f"POST {parts.path} HTTP/1.1",
        f"Host: {parts.netloc}",
        f"Content-Type: {content_type}",
        f"Content-Length: {declared}",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    stop = threading.Event()
    sent = 0

    def write() -> None:
        nonlocal sent
        try:
            while not stop.is_set() and sent + len(CHUNK) <= declared:
                sock.sendall(CHUNK)
                sent += len(CHUNK)
                time.sleep(0.001)  # slowly: the body would take minutes to arrive whole
        except OSError:
            pass  # the server closed the connection: what it should do

    started = time.monotonic()
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
        return EarlyAnswer(response.status, body, time.monotonic() - started, sent)
    finally:
        stop.set()
        writer.join(timeout=5)
        sock.close()
