"""Request stages as spans on the real OTLP/HTTP wire: the SDK's exporter posts to a receiver on
loopback that decodes the official opentelemetry-proto messages."""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from cloche.config import Settings
from cloche.egress import Egress
from cloche.serving.tracing import RequestTracer, request_tracer
from tests.integration._otlp_receiver import (
    ReceivedSpan,
    Receiver,
    otlp_receiver,
    silent_receiver,
)

LOOPBACK = Egress.from_allow("127.0.0.1")
STAGES = {
    "decode": 0.000_4,
    "queue": 0.001_2,
    "predict": 0.003,
    "encode": 0.000_3,
    "log": 0.000_1,
    "total": 0.005_5,  # a little more than the stages: time between them
}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with otlp_receiver() as r:
        yield r


def tracer_to(url: str, *, timeout_s: float = 10.0, schedule_delay_ms: int = 1000) -> RequestTracer:
    return RequestTracer(
        url,
        server_id="4242",
        egress=LOOPBACK,
        timeout_s=timeout_s,
        schedule_delay_ms=schedule_delay_ms,
    )


def recorded(
    receiver: Receiver, *, status: int = 200, traceparent: str | None = None
) -> list[ReceivedSpan]:
    """The spans of one request recorded with STAGES and flushed by shutdown."""
    tracer = tracer_to(receiver.url)
    start = time.time_ns()
    tracer.record("req-1", "churn", "churn:3", status, start, STAGES, traceparent=traceparent)
    tracer.shutdown()
    return receiver.wait_for_spans(len(STAGES))


def request_span(spans: list[ReceivedSpan]) -> ReceivedSpan:
    (found,) = [s for s in spans if s.span.kind == Span.SPAN_KIND_SERVER]
    return found


def test_a_request_is_a_server_span_with_one_child_per_stage(receiver: Receiver) -> None:
    spans = recorded(receiver)

    assert receiver.paths == ["/v1/traces"]
    parent = request_span(spans)
    assert parent.name == "predict churn"
    assert parent.attributes == {
        "cloche.request_id": "req-1",
        "cloche.endpoint": "churn",
        "cloche.deployment": "churn:3",
        "http.response.status_code": 200,
    }
    children = [s.span for s in spans if s is not parent]
    assert [c.name for c in children] == ["decode", "queue", "predict", "encode", "log"]
    for child in children:
        assert child.trace_id == parent.span.trace_id
        assert child.parent_span_id == parent.span.span_id
        assert child.kind == Span.SPAN_KIND_INTERNAL
    assert parent.span.parent_span_id == b""  # no incoming traceparent: a trace of its own


def test_stage_spans_are_laid_end_to_end_inside_the_request_span(receiver: Receiver) -> None:
    spans = recorded(receiver)

    parent = request_span(spans).span
    children = sorted(
        (s.span for s in spans if s.span is not parent), key=lambda s: s.start_time_unix_nano
    )
    assert parent.end_time_unix_nano - parent.start_time_unix_nano == 5_500_000
    assert children[0].start_time_unix_nano == parent.start_time_unix_nano
    for before, after in itertools.pairwise(children):
        assert before.end_time_unix_nano == after.start_time_unix_nano  # ordered, no overlap
    assert children[-1].end_time_unix_nano <= parent.end_time_unix_nano
    durations = {c.name: c.end_time_unix_nano - c.start_time_unix_nano for c in children}
    assert durations == {
        "decode": 400_000,
        "queue": 1_200_000,
        "predict": 3_000_000,
        "encode": 300_000,
        "log": 100_000,
    }


def test_spans_name_the_service_its_server_and_worker(receiver: Receiver) -> None:
    spans = recorded(receiver)

    resource = spans[0].resource
    assert resource["service.name"] == "cloche"
    assert resource["service.instance.id"] == "4242"
    assert resource["process.pid"] == os.getpid()


def test_a_server_error_marks_the_request_span_as_error(receiver: Receiver) -> None:
    parent = request_span(recorded(receiver, status=503)).span

    assert parent.status.code == Status.STATUS_CODE_ERROR
    assert "503" in parent.status.message


def test_a_client_error_leaves_the_request_span_status_unset(receiver: Receiver) -> None:
    parent = request_span(recorded(receiver, status=422))

    assert parent.span.status.code == Status.STATUS_CODE_UNSET
    assert parent.attributes["http.response.status_code"] == 422


def test_an_incoming_traceparent_makes_the_request_part_of_the_callers_trace(
    receiver: Receiver,
) -> None:
    spans = recorded(receiver, traceparent=f"00-{TRACE_ID}-{CALLER_SPAN}-01")

    parent = request_span(spans).span
    assert parent.trace_id.hex() == TRACE_ID
    assert parent.parent_span_id.hex() == CALLER_SPAN
    assert {s.span.trace_id.hex() for s in spans} == {TRACE_ID}


def test_a_malformed_traceparent_starts_a_new_trace(receiver: Receiver) -> None:
    spans = recorded(receiver, traceparent="00-not-a-trace-01")

    parent = request_span(spans).span
    assert parent.parent_span_id == b""
    assert len(parent.trace_id) == 16 and parent.trace_id.hex() != TRACE_ID


def test_a_request_without_a_deployment_has_no_deployment_attribute(receiver: Receiver) -> None:
    tracer = tracer_to(receiver.url)
    tracer.record("req-2", "gone", None, 404, time.time_ns(), {"decode": 0.001, "total": 0.001})
    tracer.shutdown()

    parent = request_span(receiver.wait_for_spans(2))
    assert "cloche.deployment" not in parent.attributes
    assert parent.attributes["cloche.endpoint"] == "gone"


def test_shutdown_sends_what_is_still_queued(receiver: Receiver) -> None:
    # A minute's batching delay: only the flush at shutdown can have sent these.
    tracer = tracer_to(receiver.url, schedule_delay_ms=60_000)
    for i in range(10):
        tracer.record(f"req-{i}", "churn", "churn:3", 200, time.time_ns(), STAGES)
    assert receiver.spans == []

    tracer.shutdown()

    ids = {s.attributes.get("cloche.request_id") for s in receiver.wait_for_spans(60)}
    assert ids - {None} == {f"req-{i}" for i in range(10)}


def test_spans_are_sent_in_the_background_without_shutdown(receiver: Receiver) -> None:
    tracer = tracer_to(receiver.url, schedule_delay_ms=50)
    try:
        tracer.record("req-bg", "churn", "churn:3", 200, time.time_ns(), STAGES)
        spans = receiver.wait_for_spans(len(STAGES))
    finally:
        tracer.shutdown()
    assert request_span(spans).attributes["cloche.request_id"] == "req-bg"


def test_gzip_compression_set_in_the_otel_environment_reaches_the_receiver(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip")

    spans = recorded(receiver)

    assert receiver.encodings == ["gzip"]
    assert request_span(spans).attributes["cloche.request_id"] == "req-1"


def test_a_hanging_collector_neither_blocks_requests_nor_floods_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with silent_receiver() as url:
        tracer = tracer_to(url, timeout_s=0.5, schedule_delay_ms=10)
        # Far more spans than the queue holds (2048), while the exporter's thread waits on a
        # collector that never answers: each record() returns, and the surplus is dropped.
        with caplog.at_level(logging.WARNING, logger="opentelemetry"):
            for i in range(1000):
                tracer.record(f"req-{i}", "churn", "churn:3", 200, time.time_ns(), STAGES)
        tracer.shutdown()  # bounded by timeout_s, although the collector never answers
    full = [r for r in caplog.records if "Queue full" in r.getMessage()]
    assert len(full) == 1  # once per minute, not once per dropped span


def test_a_collector_that_is_not_there_does_not_fail_requests() -> None:
    with silent_receiver() as url:
        pass  # the port is closed again: connections are refused
    tracer = tracer_to(url, timeout_s=0.5, schedule_delay_ms=10)
    for i in range(100):
        tracer.record(f"req-{i}", "churn", None, 200, time.time_ns(), STAGES)
    tracer.shutdown()


def test_the_settings_build_a_tracer_when_loopback_is_allowed(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOCHE_EGRESS__ALLOW", "127.0.0.1")
    monkeypatch.setenv("CLOCHE_SERVING__OTLP_ENDPOINT", receiver.url + "/")

    tracer = request_tracer(Settings(), server_id="77")

    assert tracer is not None and tracer.url == receiver.url + "/v1/traces"
    tracer.record("req-s", "churn", "churn:1", 200, time.time_ns(), STAGES)
    tracer.shutdown()
    assert receiver.wait_for_spans(len(STAGES))[0].resource["service.instance.id"] == "77"


def test_a_caller_that_did_not_sample_its_trace_gets_no_spans(receiver: Receiver) -> None:
    tracer = tracer_to(receiver.url)
    unsampled = f"00-{TRACE_ID}-{CALLER_SPAN}-00"
    tracer.record("req-u", "churn", "churn:3", 200, time.time_ns(), STAGES, traceparent=unsampled)
    tracer.record("req-s", "churn", "churn:3", 200, time.time_ns(), STAGES)
    tracer.shutdown()

    spans = receiver.wait_for_spans(len(STAGES))
    assert {s.attributes.get("cloche.request_id") for s in spans} - {None} == {"req-s"}


def test_the_standard_sampler_variable_keeps_a_share_of_the_traces(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.5")
    tracer = tracer_to(receiver.url)
    for i in range(400):
        tracer.record(f"req-{i}", "churn", "churn:3", 200, time.time_ns(), STAGES)
    tracer.shutdown()  # returns once the receiver has answered every batch

    kept = [s for s in receiver.spans if s.span.kind == Span.SPAN_KIND_SERVER]
    assert 100 < len(kept) < 300  # about half; far outside chance at 400 requests
    assert len(receiver.spans) == len(kept) * len(STAGES)  # a kept request keeps every stage


def test_a_parent_based_ratio_sampler_follows_a_sampled_caller(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")  # no trace of our own starts
    tracer = tracer_to(receiver.url)
    sampled = f"00-{TRACE_ID}-{CALLER_SPAN}-01"
    tracer.record("req-root", "churn", "churn:3", 200, time.time_ns(), STAGES)
    tracer.record("req-child", "churn", "churn:3", 200, time.time_ns(), STAGES, traceparent=sampled)
    tracer.shutdown()

    spans = receiver.wait_for_spans(len(STAGES))
    assert {s.attributes.get("cloche.request_id") for s in spans} - {None} == {"req-child"}
    assert {s.span.trace_id.hex() for s in spans} == {TRACE_ID}


def test_a_worker_that_exits_without_shutting_down_still_sends_its_spans(
    receiver: Receiver,
) -> None:
    # A minute's batching delay, and no shutdown() call: only the exit hook can send them.
    code = f"""
import time
from cloche.egress import Egress
from cloche.serving.tracing import RequestTracer

tracer = RequestTracer(
    {receiver.url!r}, server_id="9", egress=Egress.from_allow("127.0.0.1"),
    schedule_delay_ms=60_000,
)
tracer.record("req-exit", "churn", None, 200, time.time_ns(), {STAGES!r})
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    spans = receiver.wait_for_spans(len(STAGES))
    assert request_span(spans).attributes["cloche.request_id"] == "req-exit"
