"""HTTP transport: the SDK over a cloche server's REST API, raising the same errors as in-process.

References are parsed here before any request, so a malformed name fails alike in both
transports and never reaches a URL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from cloche import errors
from cloche.auth.local_token import read_local_token
from cloche.hosts import is_loopback
from cloche.lineage.context import headers as step_headers
from cloche.registry.refs import ModelRef

if TYPE_CHECKING:  # imported where a request is made: the in-process SDK never loads httpx
    import httpx

API = "/api/v1"
_STATUS_FALLBACK: dict[int, type[errors.ClocheError]] = {
    400: errors.BadRequest,
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    409: errors.Conflict,
    413: errors.PayloadTooLarge,
    422: errors.InvalidInput,
    502: errors.Unavailable,
    503: errors.Unavailable,
    504: errors.Timeout,
}


def error_from_response(response: httpx.Response) -> errors.ClocheError:
    """The ClocheError an error response stands for: its ``code`` picks the class."""
    try:
        body = response.json()["error"]
        code, message = str(body["code"]), str(body["message"])
    except (ValueError, KeyError, TypeError):
        # Not a cloche error body: a proxy, or something else answering at that URL.
        cls = _STATUS_FALLBACK.get(response.status_code, errors.ClocheError)
        return cls(
            f"{response.request.url} answered HTTP {response.status_code} without a cloche error",
            hint="check that the URL points at a cloche server",
        )
    details = body.get("details") if isinstance(body.get("details"), dict) else {}
    details = {k: v for k, v in details.items() if k not in ("message", "hint")}
    return errors.error_class_for_code(code)(message, hint=body.get("hint"), **details)


def local_token_for(url: str, home: Callable[[], Path]) -> str | None:
    """The local admin token under ``home()`` when ``url`` is this machine; else None.

    Only for loopback URLs: the token must never travel to another host by default.
    """
    host = urlsplit(url).hostname
    if host is None or not is_loopback(host):
        return None
    return read_local_token(home())


def path_segment(value: str) -> str:
    return quote(value, safe="")


def version_path(ref: ModelRef) -> str:
    if ref.alias is not None:
        segment = "@" + ref.alias
    else:
        segment = str(ref.version) if ref.version is not None else "latest"
    return f"{API}/models/{path_segment(ref.name)}/versions/{path_segment(segment)}"


class HttpTransport:
    """One ``httpx.Client`` to a cloche server; every request goes through ``request``."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0) -> None:
        import httpx

        from cloche import __version__

        self.url = url.rstrip("/")
        headers = {"User-Agent": f"cloche-sdk/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        # Redirects are not followed: a redirect could carry the token to another host.
        self.http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, follow_redirects=False
        )
        self.timeout = timeout

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request; a ClocheError for any error answer or connection failure."""
        if extra := step_headers():  # a pipeline step's call: its run and step go along
            kwargs["headers"] = {**extra, **(kwargs.get("headers") or {})}
        with self._errors_mapped():
            response = self.http.request(method, path, **kwargs)
        self._check(response)
        return response

    @contextmanager
    def stream(self, method: str, path: str) -> Iterator[httpx.Response]:
        with (
            self._errors_mapped(),
            self.http.stream(method, path, headers=step_headers()) as response,
        ):
            if response.is_error:
                response.read()
            self._check(response)
            yield response

    @contextmanager
    def _errors_mapped(self) -> Iterator[None]:
        import httpx

        try:
            yield
        except httpx.TimeoutException as exc:
            raise errors.Timeout(
                f"the cloche server at {self.url} did not answer within {self.timeout:g}s",
                hint="retry, or pass a larger timeout to cloche.Client",
            ) from exc
        except httpx.TransportError as exc:
            raise errors.Unavailable(
                f"cannot reach the cloche server at {self.url}: {exc}",
                hint="check the URL and that `cloche up` is running there",
            ) from exc

    def _check(self, response: httpx.Response) -> None:
        if response.is_error:
            raise error_from_response(response)
        if response.is_redirect:
            raise errors.Unavailable(
                f"{self.url} redirected to {response.headers.get('location')}",
                hint="use the server's final URL; redirects are not followed",
            )

    def close(self) -> None:
        self.http.close()
