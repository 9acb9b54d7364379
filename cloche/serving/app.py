"""The data plane: a lean ASGI app for V1 and Open Inference Protocol v2 REST.

No framework routing or dependency injection on the hot path: paths are split by hand, the
body is read once with a size cap, and every error leaves as ``{"error": {...}}`` with its status.
Predictions only decode and encode here: the prediction core (core.py) routes, queues, times,
logs and meters them, as it does gRPC's. Stages go out in ``Server-Timing`` when enabled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
import orjson

from cloche import __version__
from cloche.auth.roles import LOCAL_USER, Permission
from cloche.errors import (
    BadRequest,
    ClocheError,
    InvalidInput,
    NotFound,
)
from cloche.serving.auth import TokenCache, refuse_forwarded
from cloche.serving.calls import INLINE_DECODE_BYTES, request_id
from cloche.serving.core import Call, OnFinished, PredictionCore, server_timing
from cloche.serving.deployment import LiveDeployment, log_line
from cloche.serving.explain import Explanation, explain
from cloche.serving.metadata import model_metadata
from cloche.serving.metrics import WorkerMetrics
from cloche.serving.payload_log import PayloadLog
from cloche.serving.protocols.v1 import decode_explain_v1, decode_v1, encode_v1
from cloche.serving.protocols.v2_rest import V2Request, decode_v2, encode_v2
from cloche.serving.request_body import BodyReader, Receive
from cloche.serving.respond import Responder
from cloche.serving.router import EndpointRoute, Router

FEEDBACK_SHAPE = 'send {"labels": [{"request_id": "...", "label": 1}, ...]}'
log = logging.getLogger("cloche.serving")
Send = Callable[[dict[str, Any]], Awaitable[None]]
# (endpoint, labels, actor) -> the JSON answer; blocking, so it runs on a thread.
Feedback = Callable[[str, Any, str], dict[str, Any]]
JSON = b"application/json"
OCTET_STREAM = b"application/octet-stream"  # an OIP v2 answer with binary tensor data
PROMETHEUS = b"text/plain; version=0.0.4; charset=utf-8"
T = TypeVar("T")
V1Rows = tuple[np.ndarray, frozenset[str]]


class Response:
    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        headers: list[tuple[bytes, bytes]] | None = None,
        content_type: bytes = JSON,
    ):
        self.status, self.body, self.headers = status, body, headers or []
        self.content_type = content_type


def _json(status: int, payload: Any) -> Response:
    return Response(status, orjson.dumps(payload))


class DataPlane:
    """Serves ``/v1/...`` and ``/v2/...``; everything else is the caller's to route."""

    def __init__(
        self,
        router: Router,
        auth: TokenCache,
        *,
        max_body_bytes: int,
        payload_log: PayloadLog | None = None,
        metrics: WorkerMetrics | None = None,
        render_metrics: Callable[[], str] | None = None,
        server_timing: bool = False,
        feedback: Feedback | None = None,
        on_finished: OnFinished | None = None,
    ) -> None:
        """``on_finished``: called with every request's Call when it is finished (a tracer)."""
        self.server_timing = server_timing
        self.core = PredictionCore(
            metrics=metrics, server_timing=server_timing, on_finished=on_finished
        )
        self.feedback = feedback
        self.router = router
        self.auth = auth
        self.bodies = BodyReader(max_body_bytes)
        self.payload_log = payload_log
        self.metrics = metrics
        self.render_metrics = render_metrics
        self.draining = False
        self.responder = Responder()
        # One explanation at a time per worker: each is CPU-heavy and must not starve predicts.
        self._explaining = asyncio.Semaphore(1)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id")
        core = self.core
        call = core.call(request_id(None if given is None else given.decode("latin-1")))
        if core.on_finished is not None and b"traceparent" in headers:
            call.traceparent = headers[b"traceparent"].decode("latin-1")
        error = None
        try:
            path = scope["path"]
            if path.endswith(":predict") and path.startswith("/v1/models/"):
                # The hot path, inline: a coroutine frame less per request is measurable.
                authorization = headers.get(b"authorization")
                if authorization is not None or self.auth.required:
                    await self.auth.principal(authorization)
                else:  # the local user, unless a proxy relayed the request
                    refuse_forwarded(headers)
                if scope["method"] != "POST":
                    raise NotFound(f"no such route: {scope['method']} {path}", hint=ROUTES_HINT)
                route = self.router.endpoint(path[len("/v1/models/") : -len(":predict")])
                call.endpoint = route.name
                self.bodies.check_length(headers)
                message = await receive()
                if (
                    message.get("more_body", False)
                    or message["type"] != "http.request"
                    or b"content-encoding" in headers
                ):
                    body = await self.bodies.read(headers, receive, message)
                else:
                    body = self.bodies.capped(message.get("body", b""))
                call.body = body
                response = await core.predict(
                    call, route, None, body, len(body), _decode_v1, _encode_v1
                )
            else:
                response = await self._dispatch(scope, headers, receive, call)
        except ClocheError as exc:
            response = Response(int(exc.http_status), _error_body(exc, scope["path"]))
            if exc.code == "overloaded":
                response.headers.append((b"retry-after", b"1"))
            error = exc.message
        except Exception as exc:
            log.exception("unexpected error serving %s", scope["path"])
            internal = ClocheError("internal error while serving the request; see the server log")
            response = Response(500, orjson.dumps(internal.to_dict()))
            error = f"{type(exc).__name__}: {exc}"
        core.finished(call, response.status, error)
        body = response.body
        out = [
            *response.headers,
            (b"content-type", response.content_type),
            # A length rather than uvicorn's chunked framing: fewer bytes, simpler clients.
            (b"content-length", b"%d" % len(body)),
            (b"x-request-id", call.rid.encode()),
        ]
        if self.server_timing and call.timing is not None:
            out.append((b"server-timing", server_timing(call.timing)))
        if not self.responder.write(send, scope["method"], response.status, out, body):
            await self.responder.send_asgi(send, response.status, out, body)

    async def _dispatch(
        self, scope: dict[str, Any], headers: dict[bytes, bytes], receive: Receive, call: Call
    ) -> Response:
        path, method = scope["path"], scope["method"]
        authorization = headers.get(b"authorization")
        if path == "/metrics" and self.render_metrics is not None:
            if authorization is None and not self.auth.required:
                refuse_forwarded(headers)
            await self.auth.principal(authorization, Permission.READ)
            text = await asyncio.to_thread(self.render_metrics)
            return Response(200, text.encode(), content_type=PROMETHEUS)
        if path.startswith("/v2/health/"):
            return self._health(path[len("/v2/health/") :])
        if path == "/v2" or path == "/v2/":
            info = {"name": "cloche", "version": __version__, "extensions": ["binary_tensor_data"]}
            return _json(200, info)
        principal = LOCAL_USER
        if authorization is not None or self.auth.required:
            principal = await self.auth.principal(authorization)
        else:  # the local user, unless a proxy relayed the request
            refuse_forwarded(headers)
        if path.startswith("/v1/models/"):  # (":predict" is served in __call__)
            rest = path[len("/v1/models/") :]
            if method == "POST" and rest.endswith(":feedback"):
                body = await self.bodies.read(headers, receive)
                return await self._feedback(rest[: -len(":feedback")], body, principal.actor)
            if method == "POST" and rest.endswith(":explain"):
                route = self.router.endpoint(rest[: -len(":explain")])
                call.endpoint, call.kind = route.name, "explain"
                call.body = await self.bodies.read(headers, receive)
                return await self._explain_v1(route, call)
            if method == "GET" and "/" not in rest and ":" not in rest:
                return self._model_ready(rest, None)
        elif path.startswith("/v2/models/"):
            parts = path[len("/v2/models/") :].split("/")
            endpoint, version = parts[0], None
            if len(parts) >= 3 and parts[1] == "versions":
                version, parts = parts[2], [endpoint, *parts[3:]]
            action = parts[1] if len(parts) == 2 else None
            if method == "POST" and action == "infer":
                route = self.router.endpoint(endpoint)
                call.endpoint = route.name
                call.body = await self.bodies.read(headers, receive)
                length = _header_length(headers.get(b"inference-header-content-length"))
                body = call.body
                return await self.core.predict(
                    call, route, version, (body, length), len(body), _decode_v2, _encode_v2
                )
            if method == "GET" and len(parts) <= 2 and action in (None, "ready"):
                if action == "ready":
                    return self._model_ready(endpoint, version)
                route = self.router.endpoint(endpoint)
                return _json(200, model_metadata(route, version))
        raise NotFound(f"no such route: {method} {path}", hint=ROUTES_HINT)

    async def _feedback(self, endpoint: str, body: bytes, actor: str) -> Response:
        """Ground-truth labels by request id; the same service as the control plane's route."""
        if self.feedback is None:
            raise NotFound(
                "this server keeps no labels (an edge server has no store)",
                hint="send feedback to the central server's /v1/models/ENDPOINT:feedback",
            )
        try:
            data = await _decoded(orjson.loads, body)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"the body is not JSON: {exc}", hint=FEEDBACK_SHAPE) from None
        if not isinstance(data, dict) or "labels" not in data:
            raise InvalidInput('the body needs a "labels" list', hint=FEEDBACK_SHAPE)
        answer = await asyncio.to_thread(self.feedback, endpoint, data["labels"], actor)
        return _json(200, answer)

    def _health(self, what: str) -> Response:
        if what == "live":
            return _json(200, {"live": True})
        if what == "ready":
            # Ready once the routing table is applied (every model that fits loaded and
            # answered its warm-up first). Models that failed theirs are named, not counted:
            # the others serve, and a balancer must not pull the replica for one broken model.
            ready = self.router.ready and not self.draining
            body: dict[str, Any] = {"ready": ready}
            failed = self.router.not_ready() if self.router.ready else None
            if failed:
                body["not_ready_models"] = failed
            return _json(200 if ready else 503, body)
        raise NotFound(f"no such health check: {what}", hint="use /v2/health/live or /ready")

    def _model_ready(self, endpoint: str, version: str | None) -> Response:
        """200 when the endpoint (or version) can answer in this worker, else 503 with the
        reason; ``resident`` says whether its model is loaded or loads on the first request."""
        state = self.router.endpoint_readiness(endpoint, version)
        return _json(200 if state.ready else 503, state.to_dict(endpoint, version))

    async def _explain_v1(self, route: EndpointRoute, call: Call) -> Response:
        deployment = self.core.route(call, route)
        meta = call.meta
        assert meta is not None
        t0 = time.perf_counter()
        request = await _decoded(decode_explain_v1, call.body, deployment.inputs)
        call.inputs = request.rows
        t1 = time.perf_counter()
        async with self._explaining:
            result = await asyncio.to_thread(
                _explain_pinned,
                deployment,
                request.rows,
                background=request.background,
                feature_names=list(deployment.inputs.names),
                samples=request.samples,
                seed=request.seed,
                classes=deployment.signature.classes,
            )
        t2 = time.perf_counter()
        spec = deployment.spec
        explanation = result.to_dict()
        if meta.logged and deployment.payload_log is not None:  # as predictions are, marked
            line = log_line(
                spec, meta, 200, time.perf_counter(), request.rows, explanation, kind="explain"
            )
            deployment.payload_log.write([line])
        t3 = time.perf_counter()
        about = {"model": spec.model, "version": spec.version, "request_id": call.rid}
        body = orjson.dumps(explanation | about, option=orjson.OPT_SERIALIZE_NUMPY)
        if call.timing is not None:
            call.timing.update(
                decode=t1 - t0, explain=t2 - t1, log=t3 - t2, encode=time.perf_counter() - t3
            )
        return Response(200, body)


def _explain_pinned(deployment: LiveDeployment, rows: np.ndarray, **options: Any) -> Explanation:
    """Explain with the deployment's model pinned in the cache for the whole computation."""
    with deployment.cache.pinned(deployment.spec) as model:
        return explain(model, rows, **options)


class _V1Request:
    """A decoded V1 prediction, as the core takes it."""

    __slots__ = ("inputs", "outputs")

    def __init__(self, rows: V1Rows) -> None:
        self.inputs, self.outputs = rows


def _decode_v1(body: bytes, deployment: LiveDeployment) -> _V1Request:
    return _V1Request(decode_v1(body, deployment.inputs))


def _encode_v1(
    request: _V1Request, result: dict[str, np.ndarray], deployment: LiveDeployment, call: Call
) -> Response:
    spec = deployment.spec
    about = {"model": spec.model, "version": spec.version, "request_id": call.rid}
    return Response(200, encode_v1(result, about))


def _decode_v2(payload: tuple[bytes, int | None], deployment: LiveDeployment) -> V2Request:
    body, header_length = payload
    return decode_v2(body, header_length, deployment.inputs, deployment.outputs)


def _encode_v2(
    request: V2Request, result: dict[str, np.ndarray], deployment: LiveDeployment, call: Call
) -> Response:
    info = {
        "model_name": deployment.spec.endpoint,
        "model_version": str(deployment.spec.version),
        "id": request.request_id or call.rid,
    }
    body, binary_header = encode_v2(result, info, request.binary_outputs)
    if binary_header is None:
        return Response(200, body)
    # As the binary tensor data extension has it (and Triton sends): the body is JSON
    # followed by raw tensor bytes, and this header says where the JSON ends.
    return Response(
        200,
        body,
        [(b"inference-header-content-length", b"%d" % binary_header)],
        content_type=OCTET_STREAM,
    )


async def _decoded(decode: Callable[..., T], body: bytes, *args: Any) -> T:
    """``decode(body, *args)``: inline for a small body, on a thread for a large one."""
    if len(body) <= INLINE_DECODE_BYTES:
        return decode(body, *args)
    return await asyncio.to_thread(decode, body, *args)


ROUTES_HINT = "predict with POST /v1/models/ENDPOINT:predict or /v2/models/ENDPOINT/infer"


def _error_body(error: ClocheError, path: str) -> bytes:
    """cloche's error shape; on OIP v2 routes the protocol's, whose "error" is the message.

    Standard OIP clients (tritonclient, KServe) print ``error`` as a string; the code and hint
    ride along beside it.
    """
    if not path.startswith("/v2/"):
        return orjson.dumps(error.to_dict())
    body = {"error": error.message, "code": error.code}
    if error.hint:
        body["hint"] = error.hint
    return orjson.dumps(body)


def _header_length(value: bytes | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit():
        raise BadRequest("Inference-Header-Content-Length must be a whole number of bytes")
    return int(value)
