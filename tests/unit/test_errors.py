"""The error table: unique codes, statuses and exit codes as STYLE.md says, and one mapping."""

from __future__ import annotations

from http import HTTPStatus

import httpx
import pytest

from cloche import errors
from cloche.client._http import error_from_response

ALL = errors.all_error_classes()
EXIT_CODES = [
    (errors.InvalidInput, 2),
    (errors.Unauthorized, 3),
    (errors.Forbidden, 3),
    (errors.NotFound, 4),
    (errors.Conflict, 5),
    (errors.Unavailable, 6),
    (errors.Timeout, 6),
]


def _family_exit_code(cls: type[errors.ClocheError]) -> int:
    return next((code for base, code in EXIT_CODES if issubclass(cls, base)), 1)


def test_every_error_class_has_a_unique_code() -> None:
    codes = [cls.code for cls in ALL]
    assert len(codes) == len(set(codes))
    assert all(code and code == code.lower() and " " not in code for code in codes)


@pytest.mark.parametrize("cls", ALL, ids=lambda cls: cls.__name__)
def test_status_and_exit_code_follow_the_style_table(cls: type[errors.ClocheError]) -> None:
    assert isinstance(cls.http_status, HTTPStatus)
    assert cls.exit_code == _family_exit_code(cls)
    if issubclass(cls, errors.InvalidInput):
        assert 400 <= cls.http_status < 500
    elif cls.exit_code == 1:
        assert cls.http_status >= 500


@pytest.mark.parametrize("cls", ALL, ids=lambda cls: cls.__name__)
def test_each_error_round_trips_through_the_http_mapping(cls: type[errors.ClocheError]) -> None:
    sent = cls("something went wrong", hint="do this instead", file="model.py")
    response = httpx.Response(
        sent.http_status,
        json=sent.to_dict(),
        request=httpx.Request("GET", "http://127.0.0.1:8080/api/v1/models"),
    )
    received = error_from_response(response)
    assert type(received) is cls
    assert (received.message, received.hint, received.details) == (
        sent.message,
        sent.hint,
        sent.details,
    )


def test_a_response_without_an_error_body_maps_by_status() -> None:
    request = httpx.Request("GET", "http://127.0.0.1:8080/api/v1/models")
    error = error_from_response(
        httpx.Response(503, text="<html>bad gateway</html>", request=request)
    )
    assert type(error) is errors.Unavailable and "127.0.0.1:8080" in error.message
    unknown = httpx.Response(
        418, json={"error": {"code": "teapot", "message": "short"}}, request=request
    )
    assert type(error_from_response(unknown)) is errors.ClocheError
