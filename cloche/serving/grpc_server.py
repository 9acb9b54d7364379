"""Open Inference Protocol v2 over gRPC, served from the same Router as the REST data plane.

Calls are authenticated by ``grpc_auth.AuthInterceptor`` before their message is read. The
servicer is an edge like ``app.py``: it decodes with ``protocols.v2_grpc`` and encodes, and the
prediction core (core.py) does the rest, as for REST: routing, shadows, queueing, timing, the
payload log and metrics. Errors leave through one status table. The server runs on the
worker's event loop beside uvicorn, so batching, models and routing are shared with REST.
"""

from __future__ import annotations

import functools
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import numpy as np

from cloche import __version__, errors
from cloche.errors import ClocheError, Unavailable
from cloche.serving.auth import TokenCache
from cloche.serving.calls import request_id
from cloche.serving.core import Call, PredictionCore
from cloche.serving.deployment import LiveDeployment
from cloche.serving.metadata import model_metadata
from cloche.serving.router import Router

try:
    import grpc

    from cloche.serving.grpc_auth import AuthInterceptor
    from cloche.serving.protocols.grpc_gen import grpc_predict_v2_pb2 as pb
    from cloche.serving.protocols.grpc_gen import grpc_predict_v2_pb2_grpc as pb_grpc
    from cloche.serving.protocols.v2_grpc import decode_grpc, encode_grpc
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise errors.MissingDependency(
        f"serving gRPC needs the Python package '{exc.name}', which is not installed",
        hint="pip install 'cloche[grpc]'",
    ) from exc

log = logging.getLogger("cloche.serving")
INTERNAL_MESSAGE = "internal error while serving the request; see the server log"

# The one mapping of cloche errors to gRPC status codes; a class maps as its nearest listed base.
STATUS: dict[type[ClocheError], grpc.StatusCode] = {
    errors.PayloadTooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.SignInThrottled: grpc.StatusCode.RESOURCE_EXHAUSTED,  # 429; console only
    errors.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.Unauthorized: grpc.StatusCode.UNAUTHENTICATED,
    errors.Forbidden: grpc.StatusCode.PERMISSION_DENIED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,  # Overloaded, NotReady
    errors.Timeout: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def status_for(error: ClocheError) -> grpc.StatusCode:
    """The gRPC status code of ``error``; INTERNAL for anything not in STATUS."""
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return grpc.StatusCode.INTERNAL


def details_of(error: ClocheError) -> str:
    """The status details: the message, and the hint that says what to do."""
    return f"{error.message} (hint: {error.hint})" if error.hint else error.message


Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])


def _edge(method: Handler) -> Handler:
    """Answer a ClocheError with its status; anything else is logged and answered INTERNAL."""

    @functools.wraps(method)
    async def handle(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except ClocheError as error:
            code = (("cloche-error-code", error.code),)
            await context.abort(status_for(error), details_of(error), code)
        except Exception:
            log.exception("unexpected error serving gRPC %s", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
        raise AssertionError("unreachable: context.abort raises")

    return cast(Handler, handle)


@dataclass
class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """``inference.GRPCInferenceService`` over one worker's Router."""

    router: Router
    draining: bool = False
    core: PredictionCore = field(default_factory=PredictionCore)

    def __post_init__(self) -> None:
        if self.core.metrics is None:  # the same request metrics as REST
            self.core.metrics = self.router.metrics

    @_edge
    async def ServerLive(self, request: Any, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    @_edge
    async def ServerReady(self, request: Any, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.router.ready and not self.draining)

    @_edge
    async def ServerMetadata(self, request: Any, context: Any) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="cloche", version=__version__)

    @_edge
    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        # NotFound for an unknown endpoint or version, as on REST; not ready (REST's 503) is a
        # field of the answer here.
        state = self.router.endpoint_readiness(request.name, request.version or None)
        return pb.ModelReadyResponse(ready=state.ready)

    @_edge
    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        meta = model_metadata(self.router.endpoint(request.name), request.version or None)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=[tensor(**t) for t in meta["inputs"]],
            outputs=[tensor(**t) for t in meta["outputs"]],
        )

    @_edge
    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        core = self.core
        call = core.call(_request_id(context))
        call.body = _describe(request)  # what a failure before decoding logs
        status, error = 200, None
        try:
            route = self.router.endpoint(request.model_name)
            call.endpoint = route.name
            version = request.model_version or None
            return await core.predict(
                call, route, version, request, request.ByteSize(), _Decoded, _encode
            )
        except ClocheError as exc:
            status, error = int(exc.http_status), exc.message
            raise
        except Exception as exc:
            status, error = 500, f"{type(exc).__name__}: {exc}"
            raise
        finally:  # statuses in HTTP terms, as REST's
            core.finished(call, status, error)


class _Decoded:
    """A decoded gRPC inference request, as the core takes it, and what its answer needs."""

    __slots__ = ("id", "inputs", "outputs", "raw")

    def __init__(self, request: pb.ModelInferRequest, deployment: LiveDeployment) -> None:
        decoded = decode_grpc(request, deployment.inputs, deployment.outputs)
        self.inputs, self.outputs = decoded.inputs, decoded.outputs
        self.id, self.raw = request.id, bool(request.raw_input_contents)


def _encode(
    decoded: _Decoded, result: dict[str, np.ndarray], deployment: LiveDeployment, call: Call
) -> pb.ModelInferResponse:
    spec = deployment.spec
    return encode_grpc(
        result, spec.endpoint, str(spec.version), decoded.id or call.rid, raw=decoded.raw
    )


def _request_id(context: grpc.aio.ServicerContext) -> str:
    given = None
    for key, value in context.invocation_metadata() or ():
        if key == "x-request-id" and isinstance(value, str):
            given = value
    return request_id(given)


def _describe(request: pb.ModelInferRequest) -> str:
    """What the payload log keeps of a request that failed before it was decoded."""
    # Bounded before log_failure cuts it: names and shapes can be as long as the message.
    tensors = [
        f"{t.name[:100]} {t.datatype[:20]} {list(t.shape[:33])}" for t in request.inputs[:20]
    ]
    raw = " (raw)" if request.raw_input_contents else ""
    return f"gRPC inputs{raw}: " + "; ".join(tensors)


@dataclass
class GrpcServer:
    """A started gRPC server and the port it listens on (the real one when asked for 0)."""

    server: grpc.aio.Server
    servicer: InferenceServicer
    port: int

    async def stop(self, grace: float | None = None) -> None:
        """Refuse new calls, let those in flight finish for ``grace`` seconds, then close."""
        self.servicer.draining = True
        await self.server.stop(grace)


async def start_grpc_server(
    router: Router,
    auth: TokenCache,
    *,
    host: str,
    port: int,
    max_message_mb: int,
    reuse_port: bool = False,
    max_calls: int | None = None,
    handshake_seconds: float = 10.0,
    idle_seconds: float = 300.0,
    tls: tuple[bytes, bytes] | None = None,
    core: PredictionCore | None = None,
) -> GrpcServer:
    """Serve OIP v2 gRPC on ``host:port`` from the running event loop.

    ``reuse_port`` lets every worker process of ``cloche up`` listen on the same port (the
    kernel spreads connections among them); off, a port in use is an error. ``max_calls``
    bounds the calls in flight (more answer RESOURCE_EXHAUSTED); a connection that has not
    finished its handshake after ``handshake_seconds``, or has had no call for
    ``idle_seconds``, is closed, as HTTP ones are (serving/connections.py). ``tls`` (the PEM
    certificate chain and key) serves TLS instead of plaintext, as HTTP does with them.
    ``core``: the REST data plane's prediction core, to share its ``on_finished`` hook (by
    default, one of its own metering to the router's metrics).
    """
    limit = max_message_mb * 2**20
    server = grpc.aio.server(
        interceptors=[AuthInterceptor(auth, status_for, details_of)],
        options=[
            # Over the limit, gRPC itself answers RESOURCE_EXHAUSTED before the servicer runs.
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", int(reuse_port)),
            ("grpc.server_handshake_timeout_ms", int(handshake_seconds * 1000)),
            ("grpc.max_connection_idle_ms", int(idle_seconds * 1000)),
        ],
        maximum_concurrent_rpcs=max_calls,
    )
    servicer = InferenceServicer(router, core=core or PredictionCore(metrics=router.metrics))
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        if tls is None:
            bound = server.add_insecure_port(address)
        else:
            chain, key = tls
            bound = server.add_secure_port(address, grpc.ssl_server_credentials([(key, chain)]))
    except RuntimeError as exc:  # recent grpcio raises on a failed bind; older ones return 0
        raise _cannot_serve(address, str(exc)) from None
    if not bound:
        raise _cannot_serve(address, "the port is not available")
    await server.start()
    return GrpcServer(server, servicer, bound)


def reserve_grpc_port(host: str, port: int) -> socket.socket:
    """Bind (without listening) ``host:port`` with SO_REUSEPORT; keep it while serving.

    ``cloche up`` calls this before it starts its workers: a busy port fails here, with a clear
    error, port 0 becomes a real number to hand down, and only processes of this user that also
    set SO_REUSEPORT (the workers, ``reuse_port=True``) can listen beside it.
    """
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise _cannot_serve(f"{host}:{port}", exc.strerror or str(exc)) from None
    return sock


def _cannot_serve(address: str, why: str) -> Unavailable:
    return Unavailable(
        f"cannot serve gRPC on {address}: {why}",
        hint="pick another port with --grpc-port (or stop what is using it)",
    )
