"""What tracing costs a request: ``RequestTracer.record`` against nothing, per request.

The server calls ``record`` once per request, at its end, on the worker's event loop; with
tracing off it holds no tracer and the hook only checks ``tracer is None``. This times, in one
run and in this process:

- none: no hook at all (an empty call: the loop's own cost), the floor "off" is judged by;
- off: that check;
- on, in the request: ``record`` with the five stages of a request (six spans), which builds
  the spans and queues them (wall time per call);
- on, with export: the worker's whole CPU time per request for tracing, ``record`` plus the
  BatchSpanProcessor's export (protobuf encoding and the HTTP post, which run in the exporter's
  thread but share the worker's GIL), to an OTLP/HTTP receiver in a child process (so its own
  CPU is not counted).

Requests go in bursts of 300 (1,800 spans, under the 2,048-span queue), each burst flushed
outside the request-path timing, so no span is dropped.

    .venv/bin/python bench/tracing.py [--requests 6000] [--rounds 5]

It prints the median per-request figure of each over ``--rounds`` rounds, and the ratios.
Compare "on" with a request's own time (bench/serving.py); the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from cloche.egress import Egress
from cloche.serving.tracing import RequestTracer

BURST = 300
STAGES = {
    "decode": 0.000_04,
    "queue": 0.000_02,
    "predict": 0.000_3,
    "encode": 0.000_03,
    "log": 0.000_01,
    "total": 0.000_42,
}
# A collector in its own process: reads each body, answers 200 (an empty
# ExportTraceServiceResponse is an empty body).
COLLECTOR = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Collector(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def bursts(record: Callable[[int], None], requests: int, flush: Callable[[], None]) -> float:
    """Wall seconds per ``record`` call, flushing between bursts outside the timing."""
    spent = 0.0
    for first in range(0, requests, BURST):
        started = time.perf_counter()
        for i in range(first, min(first + BURST, requests)):
            record(i)
        spent += time.perf_counter() - started
        flush()
    return spent / requests


def with_export(record: Callable[[int], None], requests: int, flush: Callable[[], None]) -> float:
    """Process CPU seconds per request: ``record`` and the export of its spans."""
    started = time.process_time()
    for first in range(0, requests, BURST):
        for i in range(first, min(first + BURST, requests)):
            record(i)
        flush()
    return (time.process_time() - started) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=6_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    collector = subprocess.Popen(
        [sys.executable, "-c", COLLECTOR], stdout=subprocess.PIPE, text=True
    )
    try:
        assert collector.stdout is not None
        url = f"http://127.0.0.1:{collector.stdout.readline().strip()}"
        tracer = RequestTracer(url, server_id="bench", egress=Egress.from_allow("127.0.0.1"))
        off: RequestTracer | None = None

        def tracing_off(i: int) -> None:
            if off is not None:  # what the end-of-request hook does with tracing off
                off.record(str(i), "churn", "churn:1", 200, time.time_ns(), STAGES)

        def tracing_on(i: int) -> None:
            tracer.record(str(i), "churn", "churn:1", 200, time.time_ns(), STAGES)

        def no_hook(i: int) -> None:
            pass

        def nothing() -> None:
            pass

        bursts(tracing_on, 1_000, tracer.flush)  # warm up: first spans, the connection
        nones, offs, ons, exports = [], [], [], []
        for _ in range(args.rounds):  # interleaved, so drift on a shared machine hits all
            nones.append(bursts(no_hook, args.requests, nothing))
            offs.append(bursts(tracing_off, args.requests, nothing))
            ons.append(bursts(tracing_on, args.requests, tracer.flush))
            exports.append(with_export(tracing_on, args.requests, tracer.flush))
        tracer.shutdown()
    finally:
        collector.kill()
        collector.wait()

    none_s, off_s, on_s, export_s = (statistics.median(x) for x in (nones, offs, ons, exports))
    print(f"{args.requests} requests a round, {args.rounds} rounds, medians; six spans a request")
    print(f"no hook at all (the loop's own cost):    {none_s * 1e6:9.3f} us per request (wall)")
    print(f"tracing off (no tracer):                 {off_s * 1e6:9.3f} us per request (wall)")
    print(f"tracing on, in the request (record):     {on_s * 1e6:9.3f} us per request (wall)")
    print(f"tracing on, record + export (all CPU):   {export_s * 1e6:9.3f} us per request (CPU)")
    print(
        f"ratios to off: record {on_s / off_s:,.0f}x, with export {export_s / off_s:,.0f}x; "
        f"tracing adds {on_s * 1e6:.1f} us to a request, "
        f"{export_s * 1e6:.1f} us of the worker's CPU"
    )
    print(
        f"tracing off against no hook: {(off_s - none_s) * 1e9:+.0f} ns per request "
        f"({off_s / none_s:.2f}x the empty call)"
    )


if __name__ == "__main__":
    main()
