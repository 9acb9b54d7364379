"""A real uvicorn server in a background thread, and an SDK client over either transport."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn

import cloche
from cloche.auth.local_token import ensure_local_token, read_local_token
from cloche.config import Settings
from cloche.server import build_app
from cloche.store.store import Store


@dataclass(frozen=True)
class LiveServer:
    url: str
    settings: Settings
    token: str  # the local admin token, as `cloche up` writes it to CLOCHE_HOME/local-token

    @property
    def auth(self) -> dict[str, str]:
        """Headers that send the local admin token (raw httpx calls; the SDK reads it itself)."""
        return {"Authorization": f"Bearer {self.token}"}


def local_admin_token(settings: Settings) -> str:
    """What `cloche up` does first: make sure CLOCHE_HOME/local-token holds an admin token."""
    store = Store.open(settings)
    try:
        ensure_local_token(store)
    finally:
        store.close()
    token = read_local_token(settings.home)
    assert token is not None
    return token


@contextmanager
def run_server(settings: Settings, **options: Any) -> Iterator[LiveServer]:
    """Serve what `cloche up` serves (API and data plane) on a free loopback port.

    ``options`` are more uvicorn settings, such as ``cloche up``'s connection limits.
    """
    token = local_admin_token(settings)
    config = uvicorn.Config(
        build_app(settings), host="127.0.0.1", port=0, log_level="warning", lifespan="on", **options
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="cloche-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30  # a bound: two cores shared by xdist workers
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    # Port 0 lets the OS pick a free port, with no race against other processes.
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield LiveServer(url=f"http://127.0.0.1:{port}", settings=settings, token=token)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


ServerFactory = Callable[..., LiveServer]


@pytest.fixture
def start_server(settings: Settings) -> Iterator[ServerFactory]:
    """Start servers on the test's CLOCHE_HOME: ``start_server(auth={"required": True})``."""
    with ExitStack() as stack:

        def start(**overrides: Any) -> LiveServer:
            values = settings.model_dump()
            for key, value in overrides.items():
                # A dict changes some fields of a section; anything else replaces the field.
                values[key] = {**values[key], **value} if isinstance(value, dict) else value
            return stack.enter_context(run_server(Settings(**values)))

        yield start


@pytest.fixture
def live_server(start_server: ServerFactory) -> LiveServer:
    return start_server()


@pytest.fixture(params=["local", "http"])
def client(request: pytest.FixtureRequest, settings: Settings) -> Iterator[cloche.Client]:
    """The same SDK cases through the in-process and the HTTP transport, on one CLOCHE_HOME."""
    if request.param == "local":
        sdk = cloche.Client(settings=settings)
    else:
        sdk = cloche.Client(request.getfixturevalue("live_server").url)
    with sdk:
        yield sdk
