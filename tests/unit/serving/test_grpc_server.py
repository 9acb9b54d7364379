"""The gRPC edge: every cloche error leaves with the status its HTTP status implies."""

from __future__ import annotations

import asyncio
from http import HTTPStatus

import grpc
import pytest

from cloche import errors
from cloche.serving.grpc_server import _edge, details_of, status_for

# What each HTTP status of the error table means in gRPC's vocabulary.
BY_HTTP = {
    HTTPStatus.BAD_REQUEST: grpc.StatusCode.INVALID_ARGUMENT,
    HTTPStatus.UNPROCESSABLE_ENTITY: grpc.StatusCode.INVALID_ARGUMENT,
    HTTPStatus.UNSUPPORTED_MEDIA_TYPE: grpc.StatusCode.INVALID_ARGUMENT,
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    HTTPStatus.UNAUTHORIZED: grpc.StatusCode.UNAUTHENTICATED,
    HTTPStatus.FORBIDDEN: grpc.StatusCode.PERMISSION_DENIED,
    HTTPStatus.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    HTTPStatus.SERVICE_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    HTTPStatus.TOO_MANY_REQUESTS: grpc.StatusCode.RESOURCE_EXHAUSTED,
    HTTPStatus.GATEWAY_TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    HTTPStatus.CONFLICT: grpc.StatusCode.INTERNAL,  # never raised on the data plane
    HTTPStatus.INTERNAL_SERVER_ERROR: grpc.StatusCode.INTERNAL,
}


@pytest.mark.parametrize("cls", errors.all_error_classes(), ids=lambda cls: cls.__name__)
def test_every_error_maps_to_the_status_its_http_status_implies(
    cls: type[errors.ClocheError],
) -> None:
    assert status_for(cls("boom")) == BY_HTTP[cls.http_status]


def test_overloaded_and_not_ready_are_unavailable_and_timeout_is_a_deadline() -> None:
    assert status_for(errors.Overloaded("full")) == grpc.StatusCode.UNAVAILABLE
    assert status_for(errors.NotReady("loading")) == grpc.StatusCode.UNAVAILABLE
    assert status_for(errors.Timeout("slow")) == grpc.StatusCode.DEADLINE_EXCEEDED


def test_details_carry_the_message_and_the_hint() -> None:
    assert details_of(errors.NotFound("no such endpoint")) == "no such endpoint"
    error = errors.Unauthorized("token needed", hint="send 'authorization: Bearer <token>'")
    assert details_of(error) == "token needed (hint: send 'authorization: Bearer <token>')"


class Aborted(Exception):
    pass


class FakeContext:
    """What the edge uses of grpc.aio.ServicerContext: abort records the status and raises."""

    def __init__(self) -> None:
        self.aborted: tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]] | None = None

    async def abort(
        self, code: grpc.StatusCode, details: str, trailing: tuple[tuple[str, str], ...] = ()
    ) -> None:
        self.aborted = (code, details, trailing)
        raise Aborted


def _fail_with(error: Exception) -> FakeContext:
    @_edge
    async def method(self: object, request: object, context: object) -> None:
        raise error

    context = FakeContext()
    with pytest.raises(Aborted):
        asyncio.run(method(None, None, context))
    return context


def test_the_edge_answers_cloche_errors_with_their_status_and_code() -> None:
    context = _fail_with(errors.EndpointNotFound("endpoint 'x' does not exist", hint="list them"))
    assert context.aborted == (
        grpc.StatusCode.NOT_FOUND,
        "endpoint 'x' does not exist (hint: list them)",
        (("cloche-error-code", "endpoint_not_found"),),
    )


def test_the_edge_hides_unexpected_errors_behind_internal(caplog) -> None:
    context = _fail_with(ValueError("secret detail"))
    assert context.aborted is not None
    code, details, _ = context.aborted
    assert code == grpc.StatusCode.INTERNAL and "secret" not in details
    assert "secret detail" in caplog.text  # logged for the operator
