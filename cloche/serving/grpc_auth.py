"""gRPC authentication: decided from the call's metadata before its message is read.

A server interceptor sees the method and the metadata when a call starts. A refused call gets a
handler that aborts without reading the request stream, so a large message from someone without
a token is never taken in. The rule is REST's: server liveness, readiness and metadata are open
(as ``/v2/health/*`` and ``/v2`` are); everything else needs a token whose role may predict
(unless the server serves this machine without tokens), and a token-less call relayed by a
proxy is refused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from cloche.errors import ClocheError
from cloche.serving.auth import TokenCache, refuse_forwarded

SERVICE = "/inference.GRPCInferenceService/"
OPEN_METHODS = frozenset(SERVICE + name for name in ("ServerLive", "ServerReady", "ServerMetadata"))


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Check the bearer token of every call to a model before its handler runs."""

    def __init__(
        self,
        auth: TokenCache,
        status_for: Callable[[ClocheError], grpc.StatusCode],
        details_of: Callable[[ClocheError], str],
    ) -> None:
        self.auth = auth
        self.status_for = status_for
        self.details_of = details_of

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        if handler_call_details.method in OPEN_METHODS:
            return await continuation(handler_call_details)
        metadata = {
            key.encode("latin-1"): value.encode("latin-1") if isinstance(value, str) else value
            for key, value in handler_call_details.invocation_metadata or ()
        }
        authorization = metadata.get(b"authorization")
        try:
            if authorization is None and not self.auth.required:
                refuse_forwarded(metadata)
            await self.auth.principal(authorization)
        except ClocheError as error:
            return self._refusal(error)
        return await continuation(handler_call_details)

    def _refusal(self, error: ClocheError) -> Any:
        code, details = self.status_for(error), self.details_of(error)
        trailer = (("cloche-error-code", error.code),)

        # Request-streaming: the behaviour runs before any message is read, and reads none.
        async def abort(_requests: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(code, details, trailer)

        return grpc.stream_unary_rpc_method_handler(abort)
