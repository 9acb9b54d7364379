"""`cloche up` started before its PostgreSQL accepts connections (compose, a pod) waits for it.

The database is reached through a loopback relay that this test opens only after the server
said it is waiting, so the server meets a refused connection first, exactly as a replica
starting beside a database container does.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.e2e._servers import cloche_up

pytestmark = pytest.mark.timeout(120)


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            end.close()


@contextmanager
def relay(port: int, target: tuple[str, int]) -> Iterator[None]:
    """Forward connections to 127.0.0.1:``port`` to ``target`` until the block ends."""
    listener = socket.create_server(("127.0.0.1", port))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_text(path_of: Path, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in (path_of.read_text() if path_of.exists() else ""):
        assert time.monotonic() < deadline, f"{text!r} never appeared in {path_of}"
        time.sleep(0.1)


def test_up_waits_for_a_database_that_starts_after_it_and_then_serves(
    tmp_path: Path, pg_url: str
) -> None:
    real = make_url(pg_url)
    port = unused_port()
    late = real.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    env = {"CLOCHE_DB_URL": late, "CLOCHE_SERVER__DB_WAIT_SECONDS": "60"}
    with cloche_up(tmp_path / "home", env=env, wait=False) as server:
        wait_for_text(server.log_path, "waiting for the metadata database")
        assert server.proc.poll() is None, server.log()
        with relay(port, (real.host or "127.0.0.1", real.port or 5432)):
            server.wait_ready()
            assert server.proc.poll() is None


def test_up_gives_up_on_an_unreachable_database_after_its_wait_with_what_to_check(
    tmp_path: Path, pg_url: str
) -> None:
    nowhere = make_url(pg_url).set(host="127.0.0.1", port=unused_port())
    env = {
        "CLOCHE_DB_URL": nowhere.render_as_string(hide_password=False),
        "CLOCHE_SERVER__DB_WAIT_SECONDS": "2",
    }
    with cloche_up(tmp_path / "home", env=env, wait=False) as server:
        assert server.proc.wait(timeout=60) != 0
        log = server.log()
    assert "waiting for the metadata database" in log
    assert "cannot open the metadata database" in log
    assert "CLOCHE_DB_URL" in log
