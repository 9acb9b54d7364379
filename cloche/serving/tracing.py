"""A request's stages as OpenTelemetry spans, sent to a collector over OTLP/HTTP.

The prediction core times each request's stages (decode, queue, predict, encode, log, total)
anyway; at the end of a request it hands them to ``RequestTracer.record``, which turns them
into one SERVER span ``predict <endpoint>`` with a child span per stage, laid end to end with
the times measured, not re-measured. The spans carry the request id, so a trace joins the
payload log and the ground-truth labels sent for that request.

Tracing off costs nothing: the server then holds no tracer (``request_tracer`` gives None) and
this module imports OpenTelemetry only when a tracer is built. (FastAPI, in the control plane,
imports the OpenTelemetry API for its own optional telemetry; the SDK and the exporter load
only here.) A collector never slows a request: ``record`` puts finished spans on the
BatchSpanProcessor's bounded queue, and a background thread exports them; when the collector is
down or slow, the queue fills and spans are dropped, never waited for.
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import random
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cloche.egress import Egress
from cloche.errors import MissingDependency

if TYPE_CHECKING:
    from cloche.config import Settings

TRACES_PATH = "/v1/traces"  # the OTLP/HTTP path of traces, after the collector's base URL
TOTAL = "total"
SHUTDOWN_WAIT_S = 10.0  # at most, for the last spans at a worker's exit (the export timeout)
QUEUE_FULL_EVERY_S = 60.0  # the SDK warns once per dropped span; once a minute is enough


def traces_url(endpoint: str) -> str:
    """Where spans go: the collector's base URL plus /v1/traces (a URL ending in it: as is)."""
    base = endpoint.rstrip("/")
    return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


def check_endpoint(endpoint: str, egress: Egress) -> str:
    """The traces URL, once the destination check allows it and the `otlp` extra is installed.

    ``cloche up`` calls this before it binds, so a refused collector is a clear error at start,
    not a worker that dies and is restarted. Raises DestinationRefused, Unavailable (the host
    does not resolve) or MissingDependency; imports no OpenTelemetry module.
    """
    url = traces_url(endpoint)
    # The collector is an operator's setting, but it is still an outbound connection from
    # inside the network: it obeys the rule every other one does (a metadata service, a
    # database port on loopback are refused unless CLOCHE_EGRESS__ALLOW lists them).
    egress.check(url, what="OTLP endpoint")
    if not all(_importable(m) for m in ("opentelemetry.sdk", "opentelemetry.exporter.otlp")):
        raise MissingDependency(
            "tracing (--otlp-endpoint) needs the OpenTelemetry SDK and OTLP/HTTP exporter",
            hint="pip install 'cloche[otlp]', or start without --otlp-endpoint",
        )
    return url


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def request_tracer(settings: Settings, server_id: str) -> RequestTracer | None:
    """The worker's tracer when ``serving.otlp_endpoint`` is set; else None (and no import)."""
    endpoint = settings.serving.otlp_endpoint
    if not endpoint:
        return None
    return RequestTracer(endpoint, server_id=server_id, egress=settings.egress.policy())


class RequestTracer:
    """Records finished requests as spans; exports them in the background (one per worker).

    The SDK's own path (``tracer.start_span`` then ``end``) cost about 80 us of CPU for a
    request's six spans when this was written: sampler, id generator, context, locks and
    limits, per span. A finished request needs none of that, its times being known, so
    ``record`` builds the finished spans (``ReadableSpan``, what the SDK hands its processors)
    and gives them to the BatchSpanProcessor: about a fifth of the cost (bench/tracing.py
    measures it). ``tracer`` is the provider's ordinary tracer, for spans off the per-request
    path (a model's load, say).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        server_id: str,
        egress: Egress,
        timeout_s: float | None = None,
        schedule_delay_ms: int | None = None,
    ) -> None:
        """``endpoint`` is the collector's base URL (http://host:4318). ``timeout_s`` bounds one
        export (retries included) and the flush at shutdown; ``schedule_delay_ms`` is the
        longest a finished span waits in the queue before it is sent. Unset, both follow the
        standard variables (OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, OTEL_BSP_SCHEDULE_DELAY) or the
        SDK's defaults (10 s, 5 s)."""
        url = check_endpoint(endpoint, egress)
        # Imported here, never at module level: a server without tracing loads none of this.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.trace import (
            SpanContext,
            SpanKind,
            Status,
            StatusCode,
            TraceFlags,
            get_current_span,
        )
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        from cloche import __version__

        self.url = url
        self._timeout_s = SHUTDOWN_WAIT_S if timeout_s is None else timeout_s
        found = Resource.create(
            {
                "service.name": "cloche",
                "service.version": __version__,
                "service.instance.id": server_id,  # the `cloche up` process: all its workers
                "process.pid": os.getpid(),  # the worker
            }
        )

        class HashedOnce(Resource):
            # The exporter groups spans by resource, hashing it for each span, and a Resource
            # hashes by dumping its attributes to JSON: a fifth of the export's CPU. Ours
            # never changes, so its hash is computed once.
            def __hash__(self, _hash: int = hash(found)) -> int:
                return _hash

        self._resource = HashedOnce(found.attributes, found.schema_url)
        exporter = OTLPSpanExporter(endpoint=url, timeout=timeout_s)
        processor = BatchSpanProcessor(exporter, schedule_delay_millis=schedule_delay_ms)
        # Our own provider, not the global one: nothing else in the process (a user's model
        # code that uses OpenTelemetry) is redirected to our collector, nor we to theirs.
        self._provider = TracerProvider(resource=self._resource, shutdown_on_exit=False)
        self._provider.add_span_processor(processor)
        self.tracer = self._provider.get_tracer("cloche.serving", __version__)
        self._scope = InstrumentationScope("cloche.serving", __version__)
        self._emit = processor.on_end
        self._span, self._context, self._status = ReadableSpan, SpanContext, Status
        self._server, self._internal = SpanKind.SERVER, SpanKind.INTERNAL
        self._ok, self._error = Status(StatusCode.UNSET), StatusCode.ERROR
        self._sampled = TraceFlags(TraceFlags.SAMPLED)
        self._extract = TraceContextTextMapPropagator().extract
        self._current_span = get_current_span
        # The SDK's default (parent-based, always on) is what record() does without asking it;
        # a sampler chosen in the standard variable is asked for each request.
        sampler = self._provider.sampler if os.environ.get("OTEL_TRACES_SAMPLER") else None
        self._sampler = None if sampler is None else sampler.should_sample
        self._closed = threading.Lock()
        _quiet_queue_full_warnings()
        atexit.register(self.shutdown)  # a clean exit flushes even if no one called shutdown

    def record(
        self,
        request_id: str,
        endpoint: str,
        deployment: str | None,
        status: int,
        start_ns: int,
        stages: Mapping[str, float],
        *,
        traceparent: str | None = None,
    ) -> None:
        """One finished request: a span from ``start_ns`` (time.time_ns()) to start + total, and
        its stages (seconds, in order; ``total`` excluded) as child spans laid end to end.

        ``traceparent`` (the request's W3C header, when there was one) makes the request span
        a child of the caller's span, in the caller's trace; when the caller did not sample its
        trace, nothing is recorded (as the SDK's default, parent-based sampler does). A
        malformed one starts a new trace, as the W3C says. OTEL_TRACES_SAMPLER, when set,
        decides instead (e.g. ``parentbased_traceidratio`` to keep a share of the traces).
        """
        incoming = self._extract({"traceparent": traceparent}) if traceparent else None
        parent = self._parent_of(incoming) if incoming is not None else None
        trace_id = parent.trace_id if parent is not None else _random_id(128)
        if self._sampler is not None:
            name = f"predict {endpoint}"
            if not self._sampler(incoming, trace_id, name, self._server).decision.is_sampled():
                return
        elif parent is not None and not parent.trace_flags.sampled:
            return
        state = parent.trace_state if parent is not None else None
        context = self._context(trace_id, _random_id(64), False, self._sampled, state)
        span, emit, resource, scope = self._span, self._emit, self._resource, self._scope
        at = start_ns
        for name, seconds in stages.items():
            if name == TOTAL:
                continue
            end = at + round(seconds * 1e9)
            child = self._context(trace_id, _random_id(64), False, self._sampled, state)
            emit(span(name, child, context, resource, None, (), (), self._internal,
                      start_time=at, end_time=end, instrumentation_scope=scope))  # fmt: skip
            at = end
        total = stages.get(TOTAL)
        # Stages measured apart may sum a little past the total: the parent still holds them.
        end = at if total is None else max(at, start_ns + round(total * 1e9))
        attributes: dict[str, Any] = {
            "cloche.request_id": request_id,
            "cloche.endpoint": endpoint,
            "http.response.status_code": status,
        }
        if deployment is not None:
            attributes["cloche.deployment"] = deployment
        # A 4xx is the client's error: a server span's status then stays unset (OTel HTTP rules).
        outcome = self._status(self._error, f"HTTP {status}") if status >= 500 else self._ok
        emit(span(f"predict {endpoint}", context, parent, resource, attributes, (), (),
                  self._server, status=outcome, start_time=start_ns, end_time=end,
                  instrumentation_scope=scope))  # fmt: skip

    def _parent_of(self, incoming: Any) -> Any:
        """The caller's span context in an extracted context; None when the header was bad."""
        context = self._current_span(incoming).get_span_context()
        return context if context.is_valid else None

    def flush(self) -> None:
        """Export what is queued now, in this thread (benchmarks, tests; the server need not)."""
        self._provider.force_flush()

    def shutdown(self) -> None:
        """Flush what is queued (waiting at most ``timeout_s``) and stop; call at worker exit."""
        if not self._closed.acquire(blocking=False):
            return  # already shut down (by the server, then by atexit)
        atexit.unregister(self.shutdown)
        # The SDK's shutdown exports the queue batch after batch, each up to the export timeout,
        # and waits up to 30 s: with the collector down, a worker's exit would hang that long.
        # It runs in a thread of its own, and the worker waits for it at most ``timeout_s``.
        flush = threading.Thread(target=self._provider.shutdown, name="otlp-flush", daemon=True)
        flush.start()
        flush.join(self._timeout_s)


def _random_id(bits: int) -> int:
    # Not a secret, so not `secrets`; never 0, which OpenTelemetry reads as "no id".
    return random.getrandbits(bits) or 1


class _OncePer(logging.Filter):
    """Lets one record of each message through per period."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        key = str(record.msg)
        if now - self._last.get(key, -self.seconds) < self.seconds:
            return False
        self._last[key] = now
        return True


def _quiet_queue_full_warnings() -> None:
    # With the collector down, the batch processor logs "Queue full, dropping Span." for every
    # span it drops: thousands of lines a second at load, each costing the request path a log
    # record. One a minute says the same.
    logger = logging.getLogger("opentelemetry.sdk._shared_internal")
    if not any(isinstance(f, _OncePer) for f in logger.filters):
        logger.addFilter(_OncePer(QUEUE_FULL_EVERY_S))
