"""What tracing costs a request: ``RequestTracer.record`` against nothing, per request.

The server calls ``record`` once per request, at its end, on the worker's event loop; with
tracing off it holds no tracer and the hook only checks ``tracer is None``. This times both in
one run, in this process: "off" is that check, "on" is ``record`` with the five stages of a
request (six spans) while the SDK's BatchSpanProcessor exports them in its thread to a loopback
OTLP/HTTP receiver (which reads each body and answers 200), so the exporter's share of the GIL is
in the figure too.

    .venv/bin/python bench/tracing.py [--requests 20000] [--rounds 5]

It prints the median per-request time of each over ``--rounds`` rounds, and the ratio. Compare
"on" with a request's own time (bench/serving.py: a LogisticRegression request is about
0.3-1 ms at one connection); the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cloche.egress import Egress
from cloche.serving.tracing import RequestTracer

STAGES = {
    "decode": 0.000_04,
    "queue": 0.000_02,
    "predict": 0.000_3,
    "encode": 0.000_03,
    "log": 0.000_01,
    "total": 0.000_42,
}


class _Collector(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def per_request(call: Callable[[int], None], requests: int) -> float:
    """Seconds per call of ``call(i)`` over ``requests`` calls."""
    started = time.perf_counter()
    for i in range(requests):
        call(i)
    return (time.perf_counter() - started) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    tracer: RequestTracer | None = RequestTracer(
        url, server_id="bench", egress=Egress.from_allow("127.0.0.1")
    )
    off: RequestTracer | None = None

    def tracing_off(i: int) -> None:
        if off is not None:  # what the end-of-request hook does with tracing off
            off.record(str(i), "churn", "churn:1", 200, time.time_ns(), STAGES)

    def tracing_on(i: int) -> None:
        if tracer is not None:
            tracer.record(str(i), "churn", "churn:1", 200, time.time_ns(), STAGES)

    per_request(tracing_on, 1000)  # warm up: first spans, the exporter's connection
    offs, ons = [], []
    for _ in range(args.rounds):  # interleaved, so drift on a shared machine hits both
        offs.append(per_request(tracing_off, args.requests))
        ons.append(per_request(tracing_on, args.requests))
    assert tracer is not None
    tracer.shutdown()
    server.shutdown()

    off_s, on_s = statistics.median(offs), statistics.median(ons)
    print(f"requests per round: {args.requests}, rounds: {args.rounds} (medians)")
    print(f"tracing off (no tracer):      {off_s * 1e6:9.3f} us per request")
    print(f"tracing on  (record, 6 spans): {on_s * 1e6:9.3f} us per request")
    print(f"ratio on/off: {on_s / off_s:,.0f}x; on adds {(on_s - off_s) * 1e6:.1f} us per request")


if __name__ == "__main__":
    main()
