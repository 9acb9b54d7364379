"""The data plane: a lean ASGI app for V1 and Open Inference Protocol v2 REST.

No framework routing or dependency injection on the hot path: paths are split by hand, the
body is read once with a size cap, and every error leaves as ``{"error": {...}}`` with its status.
Each request's stages are timed here, in one place, and reported in ``Server-Timing``.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from cloche import __version__
from cloche.errors import BadRequest, ClocheError, NotFound, PayloadTooLarge
from cloche.serving.auth import TokenCache
from cloche.serving.deployment import LiveDeployment
from cloche.serving.protocols.v1 import decode_v1, encode_v1
from cloche.serving.protocols.v2_rest import decode_v2, encode_v2
from cloche.serving.router import Router

log = logging.getLogger("cloche.serving")
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
JSON = b"application/json"
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None):
        self.status, self.body, self.headers = status, body, headers or []


def _json(status: int, payload: Any) -> Response:
    return Response(status, orjson.dumps(payload))


class DataPlane:
    """Serves ``/v1/...`` and ``/v2/...``; everything else is the caller's to route."""

    def __init__(self, router: Router, auth: TokenCache, *, max_body_bytes: int) -> None:
        self.router = router
        self.auth = auth
        self.max_body_bytes = max_body_bytes
        self.draining = False

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        headers = dict(scope["headers"])
        rid = headers.get(b"x-request-id", b"").decode("latin-1")
        if not REQUEST_ID.match(rid):
            rid = os.urandom(12).hex()
        timing: dict[str, float] = {}
        try:
            response = await self._dispatch(scope, headers, receive, rid, timing)
        except ClocheError as exc:
            response = Response(int(exc.http_status), orjson.dumps(exc.to_dict()))
            if exc.code == "overloaded":
                response.headers.append((b"retry-after", b"1"))
        except Exception:
            log.exception("unexpected error serving %s", scope["path"])
            error = ClocheError("internal error while serving the request; see the server log")
            response = Response(500, orjson.dumps(error.to_dict()))
        timing["total"] = time.perf_counter() - start
        out = [
            (b"content-type", JSON),
            (b"x-request-id", rid.encode()),
            (b"server-timing", _server_timing(timing)),
            *response.headers,
        ]
        await send({"type": "http.response.start", "status": response.status, "headers": out})
        await send({"type": "http.response.body", "body": response.body})

    async def _dispatch(
        self,
        scope: dict[str, Any],
        headers: dict[bytes, bytes],
        receive: Receive,
        rid: str,
        timing: dict[str, float],
    ) -> Response:
        path, method = scope["path"], scope["method"]
        if path.startswith("/v2/health/"):
            return self._health(path[len("/v2/health/") :])
        if path == "/v2" or path == "/v2/":
            return _json(
                200,
                {"name": "cloche", "version": __version__, "extensions": ["binary_tensor_data"]},
            )
        await self.auth.principal(headers.get(b"authorization"))
        if path.startswith("/v1/models/"):
            rest = path[len("/v1/models/") :]
            if method == "POST" and rest.endswith(":predict"):
                body = await self._body(headers, receive)
                return await self._predict_v1(rest[: -len(":predict")], body, rid, timing)
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
                body = await self._body(headers, receive)
                header_len = headers.get(b"inference-header-content-length")
                return await self._infer_v2(endpoint, version, body, header_len, rid, timing)
            if method == "GET" and len(parts) <= 2 and action in (None, "ready"):
                return self._model_metadata(endpoint, version, ready_only=action == "ready")
        raise NotFound(
            f"no such route: {method} {path}",
            hint="predict with POST /v1/models/ENDPOINT:predict or /v2/models/ENDPOINT/infer",
        )

    def _health(self, what: str) -> Response:
        if what == "live":
            return _json(200, {"live": True})
        if what == "ready":
            ready = self.router.ready and not self.draining
            return _json(200 if ready else 503, {"ready": ready})
        raise NotFound(
            f"no such health check: {what}", hint="use /v2/health/live or /v2/health/ready"
        )

    async def _body(self, headers: dict[bytes, bytes], receive: Receive) -> bytes:
        length = headers.get(b"content-length")
        if length is not None and int(length) > self.max_body_bytes:
            raise self._too_large()
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise BadRequest("the client disconnected before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"the request body is over {self.max_body_bytes // 2**20} MiB",
            hint="send fewer rows per request, or raise CLOCHE_SERVING__MAX_REQUEST_MB",
        )

    def _deployment(self, endpoint: str, version: str | None) -> LiveDeployment:
        route = self.router.endpoint(endpoint)
        return route.choose() if version is None else route.version(version)

    async def _predict_v1(
        self, endpoint: str, body: bytes, rid: str, timing: dict[str, float]
    ) -> Response:
        deployment = self._deployment(endpoint, None)
        t0 = time.perf_counter()
        X, outputs = decode_v1(body, deployment.inputs)
        outputs &= deployment.outputs
        t1 = time.perf_counter()
        result = await deployment.predict(X, outputs)
        t2 = time.perf_counter()
        spec = deployment.spec
        meta = {"model": spec.model, "version": spec.version, "request_id": rid}
        out = encode_v1(result, meta)
        timing.update(decode=t1 - t0, predict=t2 - t1, encode=time.perf_counter() - t2)
        return Response(200, out)

    async def _infer_v2(
        self,
        endpoint: str,
        version: str | None,
        body: bytes,
        header_len: bytes | None,
        rid: str,
        timing: dict[str, float],
    ) -> Response:
        deployment = self._deployment(endpoint, version)
        t0 = time.perf_counter()
        try:
            length = int(header_len) if header_len is not None else None
        except ValueError:
            raise BadRequest("Inference-Header-Content-Length must be a number") from None
        request = decode_v2(body, length, deployment.inputs, deployment.outputs)
        t1 = time.perf_counter()
        result = await deployment.predict(request.inputs, request.outputs)
        t2 = time.perf_counter()
        spec = deployment.spec
        meta = {
            "model_name": endpoint,
            "model_version": str(spec.version),
            "id": request.request_id or rid,
        }
        out, binary_header = encode_v2(result, meta, request.binary_outputs)
        timing.update(decode=t1 - t0, predict=t2 - t1, encode=time.perf_counter() - t2)
        if binary_header is None:
            return Response(200, out)
        return Response(
            200, out, [(b"inference-header-content-length", str(binary_header).encode())]
        )

    def _model_metadata(self, endpoint: str, version: str | None, *, ready_only: bool) -> Response:
        route = self.router.endpoint(endpoint)
        deployment = (
            route.version(version)
            if version
            else (route.live or tuple(route.by_version.values()))[0]
        )
        if ready_only:
            return _json(200, {"name": endpoint, "ready": True})
        sig = deployment.signature
        return _json(
            200,
            {
                "name": endpoint,
                "versions": sorted({str(d.spec.version) for d in route.by_version.values()}),
                "platform": deployment.spec.framework,
                "inputs": [_tensor_meta(f.name, f.dtype, f.shape) for f in sig.inputs],
                "outputs": [_tensor_meta(f.name, f.dtype, f.shape) for f in sig.outputs],
                "parameters": {
                    "model": deployment.spec.model,
                    "task": sig.task,
                    "classes": list(sig.classes) if sig.classes is not None else None,
                },
            },
        )


V2_TYPES = {
    "bool": "BOOL",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}


def _tensor_meta(name: str, dtype: str, shape: tuple[int, ...]) -> dict[str, Any]:
    return {"name": name, "datatype": V2_TYPES.get(dtype, "BYTES"), "shape": list(shape)}


def _server_timing(timing: dict[str, float]) -> bytes:
    return ", ".join([f"{k};dur={v * 1000:.3f}" for k, v in timing.items()]).encode()
