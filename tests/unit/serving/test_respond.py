"""Answers in one write through uvicorn's httptools cycle, and the ASGI way everywhere else."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from cloche.serving.respond import Responder

HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"2")]


async def _answer(send: Any, method: str = "POST") -> None:
    """As the data plane answers: one write when it can, else the two ASGI messages."""
    responder = Responder()
    if not responder.write(send, method, 200, HEADERS, b"{}"):
        await responder.send_asgi(send, 200, HEADERS, b"{}")


class Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def _cycle(*, keep_alive: bool = True, access_log: bool = False) -> tuple[Any, Transport, list]:
    transport = Transport()
    completed: list[bool] = []
    cycle = RequestResponseCycle(
        scope={  # type: ignore[typeddict-item]
            "type": "http",
            "method": "POST",
            "path": "/v1/models/m:predict",
            "raw_path": b"/v1/models/m:predict",
            "query_string": b"",
            "http_version": "1.1",
            "client": ("127.0.0.1", 5000),
        },
        transport=transport,  # type: ignore[arg-type]
        flow=FlowControl(transport),  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
        access_logger=logging.getLogger("test.access"),
        access_log=access_log,
        default_headers=[(b"date", b"Tue, 25 Nov 2026 12:00:00 GMT")],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=keep_alive,
        on_response=lambda: completed.append(True),
    )
    return cycle, transport, completed


def test_an_answer_goes_out_in_one_write_and_completes_the_cycle() -> None:
    async def main() -> None:
        cycle, transport, completed = _cycle()
        await _answer(cycle.send)
        assert transport.writes == [
            b"HTTP/1.1 200 OK\r\ndate: Tue, 25 Nov 2026 12:00:00 GMT\r\n"
            b"content-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
        ]
        assert cycle.response_started and cycle.response_complete and completed == [True]
        assert cycle.message_event.is_set() and not transport.closed
        # What uvicorn itself would have written, in two pieces.
        reference, ref_transport, _ = _cycle()
        await reference.send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await reference.send({"type": "http.response.body", "body": b"{}"})
        assert b"".join(ref_transport.writes) == transport.writes[0]

    asyncio.run(main())


def test_the_access_log_line_is_the_installed_uvicorns(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        cycle, transport, _ = _cycle(access_log=True)
        with caplog.at_level(logging.INFO, logger="test.access"):
            await _answer(cycle.send)
        ours = list(caplog.messages)
        caplog.clear()
        # The line uvicorn itself writes for the same answer, whatever its release.
        reference, _, _ = _cycle(access_log=True)
        with caplog.at_level(logging.INFO, logger="test.access"):
            await reference.send({"type": "http.response.start", "status": 200, "headers": []})
        assert len(transport.writes) == 1
        assert ours == caplog.messages
        assert ours == ['127.0.0.1:5000 - "POST /v1/models/m:predict HTTP/1.1" 200']

    asyncio.run(main())


def test_a_scope_without_raw_path_or_client_still_logs(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        cycle, transport, _ = _cycle(access_log=True)
        del cycle.scope["raw_path"]
        cycle.scope["client"] = None
        cycle.scope["query_string"] = b"a=1"
        with caplog.at_level(logging.INFO, logger="test.access"):
            await _answer(cycle.send)
        assert len(transport.writes) == 1
        assert caplog.messages == [' - "POST /v1/models/m:predict?a=1 HTTP/1.1" 200']

    asyncio.run(main())


@pytest.mark.parametrize("case", ["closing", "write-paused", "head", "not-uvicorn"])
def test_other_states_and_servers_get_the_two_asgi_messages(case: str) -> None:
    async def main() -> None:
        cycle, transport, _ = _cycle(keep_alive=case != "closing")
        if case == "write-paused":
            cycle.flow.write_paused = True
        sent: list[dict[str, Any]] = []

        async def other_server(message: dict[str, Any]) -> None:
            sent.append(message)

        async def uvicorn_send(message: dict[str, Any]) -> None:
            sent.append(message)
            if not cycle.flow.write_paused:  # a paused transport would wait for drain
                await cycle.send(message)

        send = other_server if case == "not-uvicorn" else cycle.send
        if case == "write-paused":
            # Seen through a bound method of the cycle, as the data plane would see it.
            send = uvicorn_send
            send.__self__ = cycle  # type: ignore[attr-defined]
        await _answer(send, "HEAD" if case == "head" else "POST")
        if case in ("not-uvicorn", "write-paused"):
            assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
        else:
            assert len(transport.writes) == 2  # uvicorn's own head, then body
        if case == "closing":
            assert b"connection: close" in transport.writes[0] and transport.closed

    asyncio.run(main())
