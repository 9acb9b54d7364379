"""The data plane: a lean ASGI app for V1 and Open Inference Protocol v2 REST.

No framework routing or dependency injection on the hot path: paths are split by hand, the
body is read once with a size cap, and every error leaves as ``{"error": {...}}`` with its status.
Each request's stages are timed here, in one place, and reported in ``Server-Timing``; each
answered or failed request is logged here or, for predictions, by its batch (deployment.py).
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
from cloche.serving.calls import (
    INLINE_DECODE_BYTES,
    MAX_LOGGED_BYTES,
    log_failure,
    mirror_to_shadows,
    request_id,
)
from cloche.serving.deployment import LiveDeployment, RequestMeta, log_line
from cloche.serving.explain import explain
from cloche.serving.metadata import model_metadata
from cloche.serving.metrics import WorkerMetrics
from cloche.serving.payload_log import PayloadLog
from cloche.serving.protocols.v1 import decode_explain_v1, decode_v1, encode_v1
from cloche.serving.protocols.v2_rest import decode_v2, encode_v2
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


class Call:
    """One request's state: its id, stage timings, and what the payload log needs."""

    __slots__ = (
        "body",
        "deployment",
        "endpoint",
        "inputs",
        "kind",
        "meta",
        "rid",
        "stage_at",
        "started",
        "timing",
    )

    def __init__(self, rid: str, timed: bool) -> None:
        self.rid = rid
        self.endpoint: str | None = None  # set once a prediction names a known endpoint
        self.kind = "predict"  # or "explain": metered and logged apart
        self.started = self.stage_at = time.perf_counter()
        # Stage timings, for Server-Timing; None when the server does not send it.
        self.timing: dict[str, float] | None = {} if timed else None
        self.deployment: LiveDeployment | None = None
        self.meta: RequestMeta | None = None
        self.body = b""
        self.inputs: np.ndarray | None = None

    def route_to(self, deployment: LiveDeployment) -> RequestMeta:
        self.deployment = deployment
        logged = deployment.payload_sampled()
        self.meta = RequestMeta(self.rid, self.started, time.time_ns() // 1_000_000, logged)
        return self.meta


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
    ) -> None:
        self.server_timing = server_timing
        self.feedback = feedback
        self.router = router
        self.auth = auth
        self.bodies = BodyReader(max_body_bytes)
        self.payload_log = payload_log
        self.metrics = metrics
        self.render_metrics = render_metrics
        self.draining = False
        self.responder = Responder()
        self._background: set[asyncio.Task[Any]] = set()
        # One explanation at a time per worker: each is CPU-heavy and must not starve predicts.
        self._explaining = asyncio.Semaphore(1)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id")
        call = Call(
            request_id(None if given is None else given.decode("latin-1")), self.server_timing
        )
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
                    call.body = await self.bodies.read(headers, receive, message)
                else:
                    call.body = self.bodies.capped(message.get("body", b""))
                if len(call.body) <= INLINE_DECODE_BYTES:
                    deployment, answer = self._start_v1(route, call)
                else:
                    deployment, answer = await self._start_v1_off_loop(route, call)
                response = self._finish_v1(deployment, call, await answer)
            else:
                response = await self._dispatch(scope, headers, receive, call)
        except ClocheError as exc:
            response = Response(int(exc.http_status), _error_body(exc, scope["path"]))
            if exc.code == "overloaded":
                response.headers.append((b"retry-after", b"1"))
            self._log_failure(call, response.status, exc.message)
        except Exception as exc:
            log.exception("unexpected error serving %s", scope["path"])
            error = ClocheError("internal error while serving the request; see the server log")
            response = Response(500, orjson.dumps(error.to_dict()))
            self._log_failure(call, 500, f"{type(exc).__name__}: {exc}")
        total = time.perf_counter() - call.started
        if self.metrics is not None and call.endpoint is not None:
            ref = call.deployment.ref if call.deployment is not None else "-"
            if call.kind == "predict":
                self.metrics.request(call.endpoint, ref, response.status, total)
            else:
                self.metrics.explain(call.endpoint, ref, response.status, total)
        body = response.body
        out = [
            *response.headers,
            (b"content-type", response.content_type),
            # A length rather than uvicorn's chunked framing: fewer bytes, simpler clients.
            (b"content-length", b"%d" % len(body)),
            (b"x-request-id", call.rid.encode()),
        ]
        if call.timing is not None:
            call.timing["total"] = total
            out.append((b"server-timing", _server_timing(call.timing)))
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
                route = self.router.endpoint(rest)
                return _json(200, {"name": rest, "ready": bool(route.live)})
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
                return await self._infer_v2(route, version, length, call)
            if method == "GET" and len(parts) <= 2 and action in (None, "ready"):
                route = self.router.endpoint(endpoint)
                if action == "ready":
                    route.version(version) if version else route.choose()
                    return _json(200, {"name": endpoint, "ready": True})
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
            ready = self.router.ready and not self.draining
            return _json(200 if ready else 503, {"ready": ready})
        raise NotFound(f"no such health check: {what}", hint="use /v2/health/live or /ready")

    def _start_v1(
        self,
        route: EndpointRoute,
        call: Call,
        decoded: tuple[LiveDeployment, float, V1Rows] | None = None,
    ) -> tuple[LiveDeployment, Awaitable[dict[str, np.ndarray]]]:
        """Decode a V1 prediction and queue it: its deployment and the future of its outputs.

        ``decoded``: the deployment, decoding's start and its rows, when decoded off the loop.
        """
        if decoded is None:
            deployment = route.choose()
            meta = call.route_to(deployment)
            t0 = time.perf_counter()
            X, outputs = decode_v1(call.body, deployment.inputs)
        else:
            deployment, t0, (X, outputs) = decoded
            meta = call.route_to(deployment) if call.meta is None else call.meta
        call.inputs = X
        if not outputs <= deployment.outputs:
            outputs &= deployment.outputs
        t1 = call.stage_at = time.perf_counter()
        if call.timing is not None:
            call.timing["decode"] = t1 - t0
        if route.shadows:
            mirror_to_shadows(route, X, outputs, meta, self._background)
        return deployment, deployment.batcher.enqueue(X, outputs, deployment.timeout_s, meta)

    async def _start_v1_off_loop(
        self, route: EndpointRoute, call: Call
    ) -> tuple[LiveDeployment, Awaitable[dict[str, np.ndarray]]]:
        """``_start_v1`` for a large body, decoded on a thread (see INLINE_DECODE_BYTES)."""
        deployment = route.choose()
        call.route_to(deployment)  # first: a body that fails to decode is logged as failed
        t0 = time.perf_counter()
        rows = await asyncio.to_thread(decode_v1, call.body, deployment.inputs)
        return self._start_v1(route, call, (deployment, t0, rows))

    def _finish_v1(
        self, deployment: LiveDeployment, call: Call, result: dict[str, np.ndarray]
    ) -> Response:
        t2 = time.perf_counter()
        spec = deployment.spec
        body = encode_v1(
            result, {"model": spec.model, "version": spec.version, "request_id": call.rid}
        )
        if call.timing is not None:
            call.timing.update(predict=t2 - call.stage_at, encode=time.perf_counter() - t2)
        return Response(200, body)

    async def _explain_v1(self, route: EndpointRoute, call: Call) -> Response:
        deployment = route.choose()
        meta = call.route_to(deployment)
        t0 = time.perf_counter()
        request = await _decoded(decode_explain_v1, call.body, deployment.inputs)
        call.inputs = request.rows
        t1 = time.perf_counter()
        async with self._explaining:
            result = await asyncio.to_thread(
                explain,
                deployment.model,
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
        about = {"model": spec.model, "version": spec.version, "request_id": call.rid}
        body = orjson.dumps(explanation | about, option=orjson.OPT_SERIALIZE_NUMPY)
        if call.timing is not None:
            call.timing.update(decode=t1 - t0, explain=t2 - t1, encode=time.perf_counter() - t2)
        return Response(200, body)

    async def _infer_v2(
        self, route: EndpointRoute, version: str | None, header_length: int | None, call: Call
    ) -> Response:
        deployment = route.choose() if version is None else route.version(version)
        meta = call.route_to(deployment)
        t0 = time.perf_counter()
        args = (call.body, header_length, deployment.inputs, deployment.outputs)
        if len(call.body) <= INLINE_DECODE_BYTES:  # (inline: a coroutine frame less)
            request = decode_v2(*args)
        else:
            request = await asyncio.to_thread(decode_v2, *args)
        call.inputs = request.inputs
        t1 = time.perf_counter()
        if version is None and route.shadows:
            mirror_to_shadows(route, request.inputs, request.outputs, meta, self._background)
        result = await deployment.batcher.enqueue(
            request.inputs, request.outputs, deployment.timeout_s, meta
        )
        t2 = time.perf_counter()
        info = {
            "model_name": route.name,
            "model_version": str(deployment.spec.version),
            "id": request.request_id or call.rid,
        }
        body, binary_header = encode_v2(result, info, request.binary_outputs)
        if call.timing is not None:
            call.timing.update(decode=t1 - t0, predict=t2 - t1, encode=time.perf_counter() - t2)
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

    def _log_failure(self, call: Call, status: int, error: str) -> None:
        """A failed request routed to a deployment is logged with its error."""
        if call.deployment is None or call.meta is None:
            return
        inputs: Any = call.inputs
        if inputs is None:
            inputs = call.body[:MAX_LOGGED_BYTES].decode("utf-8", "replace")
        log_failure(call.deployment, call.meta, inputs, status, error, call.kind)


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


def _server_timing(timing: dict[str, float]) -> bytes:
    if len(timing) == 4 and "predict" in timing:  # the common case, formatted in one go
        t = timing
        return (
            f"decode;dur={t['decode'] * 1000:.3f}, predict;dur={t['predict'] * 1000:.3f}, "
            f"encode;dur={t['encode'] * 1000:.3f}, total;dur={t['total'] * 1000:.3f}"
        ).encode()
    return ", ".join([f"{k};dur={v * 1000:.3f}" for k, v in timing.items()]).encode()
