"""HTTP transport: the SDK over a cloche server's REST API, raising the same errors as in-process.

References are parsed here before any request, so a malformed name fails alike in both
transports and never reaches a URL.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from cloche import errors
from cloche.audit import AuditEntry
from cloche.auth.local_token import read_local_token
from cloche.auth.tokens import NewToken, TokenInfo
from cloche.client import _files
from cloche.config import Settings
from cloche.export.entities import ExportResult
from cloche.hosts import is_loopback
from cloche.registry.entities import DeleteResult, ModelDetail, ModelSummary, ModelVersion
from cloche.registry.refs import ModelRef, check_alias, check_name, parse_ref
from cloche.runtimes.base import LoadedModel
from cloche.store.artifacts import Progress, list_source_files

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


def _seg(value: str) -> str:
    return quote(value, safe="")


def _version_path(ref: ModelRef) -> str:
    if ref.alias is not None:
        segment = "@" + ref.alias
    else:
        segment = str(ref.version) if ref.version is not None else "latest"
    return f"{API}/models/{_seg(ref.name)}/versions/{_seg(segment)}"


class HttpTransport:
    """One ``httpx.Client`` to a cloche server; every request goes through ``request``."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0) -> None:
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
        with self._errors_mapped():
            response = self.http.request(method, path, **kwargs)
        self._check(response)
        return response

    @contextmanager
    def stream(self, method: str, path: str) -> Iterator[httpx.Response]:
        with self._errors_mapped(), self.http.stream(method, path) as response:
            if response.is_error:
                response.read()
            self._check(response)
            yield response

    @contextmanager
    def _errors_mapped(self) -> Iterator[None]:
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


class HttpModels:
    def __init__(self, transport: HttpTransport) -> None:
        self._t = transport

    def upload(
        self,
        path: str | Path,
        *,
        name: str,
        framework: str | None = None,
        sample: str | Path | None = None,
        baseline: str | Path | None = None,
        aliases: Sequence[str] = (),
        labels: Mapping[str, str] | None = None,
        metrics: Mapping[str, float] | None = None,
        description: str = "",
        progress: Progress | None = None,
    ) -> ModelVersion:
        source = Path(path)
        files = list_source_files(source)
        form: dict[str, Any] = {
            "name": name,
            "description": description,
            "aliases": list(aliases),
            "folder": "true" if source.is_dir() else "false",
            "labels": json.dumps(dict(labels or {})),
            "metrics": json.dumps(dict(metrics or {})),
        }
        if framework:
            form["framework"] = framework
        report = _files.meter(sum(p.stat().st_size for p in files.values()), progress)
        with ExitStack() as stack:
            parts: list[tuple[str, Any]] = [
                ("files", (rel, stack.enter_context(_files.MeteredFile(p, report))))
                for rel, p in files.items()
            ]
            for field, extra in (("sample", sample), ("baseline", baseline)):
                if extra is not None:
                    dataset = stack.enter_context(_files.open_dataset(extra))
                    parts.append((field, (Path(extra).name, dataset)))
            response = self._t.request("POST", f"{API}/models", data=form, files=parts)
        return ModelVersion.model_validate(response.json())

    def list(
        self, *, labels: Mapping[str, str] | None = None, search: str | None = None
    ) -> list[ModelSummary]:
        params = [("label", f"{k}={v}") for k, v in (labels or {}).items()]
        if search:
            params.append(("search", search))
        response = self._t.request("GET", f"{API}/models", params=params)
        return [ModelSummary.model_validate(m) for m in response.json()]

    def get(self, name: str) -> ModelDetail:
        model = parse_ref(name).name
        response = self._t.request("GET", f"{API}/models/{_seg(model)}")
        return ModelDetail.model_validate(response.json())

    def show(self, ref: str) -> ModelVersion:
        response = self._t.request("GET", _version_path(parse_ref(ref)))
        return ModelVersion.model_validate(response.json())

    def alias(self, ref: str, alias: str) -> ModelVersion:
        check_alias(alias)
        parsed = parse_ref(ref)
        path = f"{API}/models/{_seg(parsed.name)}/aliases/{_seg(alias)}"
        response = self._t.request("PUT", path, json={"ref": str(parsed)})
        return ModelVersion.model_validate(response.json())

    def remove_alias(self, name: str, alias: str) -> None:
        path = f"{API}/models/{_seg(check_name(name))}/aliases/{_seg(alias)}"
        self._t.request("DELETE", path)

    def attach_baseline(self, ref: str, path: str | Path) -> dict[str, Any]:
        target = _version_path(parse_ref(ref)) + "/baseline"
        with _files.open_dataset(path) as fh:
            response = self._t.request("PUT", target, files={"file": (Path(path).name, fh)})
        result: dict[str, Any] = response.json()
        return result

    def delete(self, ref: str) -> DeleteResult:
        parsed = parse_ref(ref)
        whole = parsed.version is None and parsed.alias is None
        path = f"{API}/models/{_seg(parsed.name)}" if whole else _version_path(parsed)
        return DeleteResult.model_validate(self._t.request("DELETE", path).json())

    def load(self, ref: str) -> LoadedModel:
        from cloche.runtimes import get_runtime

        version = self.show(ref)
        files_path = _version_path(ModelRef(version.name, version.version)) + "/files/"
        folder = _files.fetch_version(
            version,
            cache_root=Settings().home.resolve() / "cache" / "remote",
            open_stream=lambda rel: self._t.stream("GET", files_path + quote(rel)),
        )
        return get_runtime(version.framework).load(folder)

    def export(
        self,
        ref: str,
        out: str | Path,
        *,
        format: str = "bundle",
        native: bool = False,
        with_wheels: bool = False,
        slim: bool = True,
        platform: str | None = None,
        overwrite: bool = False,
    ) -> ExportResult:
        # An export reads the version's files and its baseline (for the parity check), and the
        # API serves no baselines: a bundle made here would be checked on weaker, generated rows.
        parse_ref(ref)
        raise errors.InvalidInput(
            f"cloche export does not run through a server ({self._t.url}): it reads the "
            "registry's files and baseline where the store is",
            hint="run it on the server's machine without --url/CLOCHE_URL, with CLOCHE_HOME "
            "(or CLOCHE_DB_URL) naming the server's store",
        )


class HttpTokens:
    def __init__(self, transport: HttpTransport) -> None:
        self._t = transport

    def create(self, *, role: str, name: str = "") -> NewToken:
        response = self._t.request("POST", f"{API}/tokens", json={"role": role, "name": name})
        return NewToken.model_validate(response.json())

    def list(self) -> list[TokenInfo]:
        return [TokenInfo.model_validate(t) for t in self._t.request("GET", f"{API}/tokens").json()]

    def revoke(self, token_id: str) -> TokenInfo:
        response = self._t.request("DELETE", f"{API}/tokens/{_seg(token_id)}")
        return TokenInfo.model_validate(response.json())


class HttpAudit:
    def __init__(self, transport: HttpTransport) -> None:
        self._t = transport

    def list(
        self, *, resource_type: str | None = None, resource: str | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        params: dict[str, Any] = {"limit": limit}
        if resource_type:
            params["resource_type"] = resource_type
        if resource:
            params["resource"] = resource
        response = self._t.request("GET", f"{API}/audit", params=params)
        return [AuditEntry.model_validate(e) for e in response.json()]
