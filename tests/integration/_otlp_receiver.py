"""A real OTLP/HTTP trace receiver on loopback (no collector installs here).

It takes what an OTLPSpanExporter posts to /v1/traces, unzips it when Content-Encoding says
gzip, parses it with the official opentelemetry-proto messages and answers an
ExportTraceServiceResponse, as a collector would. ``silent_receiver`` accepts connections and
never answers: a collector that hangs.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.integration._loopback_http import QuietHandler, loopback_server


@dataclass
class ReceivedSpan:
    """A span as it arrived, with its resource's attributes."""

    span: Span
    resource: dict[str, Any]

    @property
    def name(self) -> str:
        return self.span.name

    @property
    def attributes(self) -> dict[str, Any]:
        return attributes(self.span.attributes)


@dataclass
class Receiver:
    url: str = ""  # the base URL, as given to --otlp-endpoint
    requests: list[ExportTraceServiceRequest] = field(default_factory=list)
    encodings: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    _arrived: threading.Condition = field(default_factory=threading.Condition)

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._arrived:
            return [
                ReceivedSpan(span, attributes(rs.resource.attributes))
                for request in self.requests
                for rs in request.resource_spans
                for ss in rs.scope_spans
                for span in ss.spans
            ]

    def wait_for_spans(self, count: int, timeout: float = 10.0) -> list[ReceivedSpan]:
        """At least ``count`` spans, once they have arrived (AssertionError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.spans) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"{len(self.spans)} of {count} spans arrived"
                self._arrived.wait(left)
        return self.spans

    def _add(self, request: ExportTraceServiceRequest, encoding: str, path: str) -> None:
        with self._arrived:
            self.requests.append(request)
            self.encodings.append(encoding)
            self.paths.append(path)
            self._arrived.notify_all()


def attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: value(kv.value) for kv in pairs}


def value(any_value: AnyValue) -> Any:
    kind = any_value.WhichOneof("value")
    return None if kind is None else getattr(any_value, kind)


class _Handler(QuietHandler):
    receiver: Receiver  # set on the subclass each receiver builds

    def do_POST(self) -> None:
        body = self.body()
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.receiver._add(request, encoding, self.path)
        answer = ExportTraceServiceResponse().SerializeToString()
        self.answer(200, answer, {"Content-Type": "application/x-protobuf"})


@contextmanager
def otlp_receiver() -> Iterator[Receiver]:
    """An OTLP/HTTP receiver on a free loopback port; ``url`` is its base URL."""
    receiver = Receiver()
    handler = type("Handler", (_Handler,), {"receiver": receiver})
    with loopback_server(handler, "test-otlp") as port:
        receiver.url = f"http://127.0.0.1:{port}"
        yield receiver


@contextmanager
def silent_receiver() -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog) and never answers; its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()
