"""A browser-like client of the console: cookies, its forms' CSRF tokens, same-origin posts."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from cloche.auth import tokens
from cloche.auth.roles import LOCAL_USER
from cloche.registry import upload
from cloche.registry.entities import ModelVersion
from cloche.registry.inspection import inspect_here
from cloche.store.store import Store

HIDDEN_CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


class Browser:
    """What a browser sends: cookies, Origin on posts, HX-Request when htmx makes the call."""

    def __init__(self, url: str, **client: Any) -> None:
        self.url = url
        self.token = ""  # the API token it signed in with, for the same call over the API
        # Uploads are inspected in a child process: on a busy machine that takes seconds.
        self.http = httpx.Client(base_url=url, follow_redirects=False, timeout=60, **client)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *_: object) -> None:
        self.http.close()

    def get(self, path: str, *, htmx: bool = False, **kw: Any) -> httpx.Response:
        headers = {"HX-Request": "true"} if htmx else {}
        return self.http.get(path, headers={**headers, **kw.pop("headers", {})}, **kw)

    def post(
        self, path: str, data: dict[str, str], *, htmx: bool = False, origin: str | None = None
    ) -> httpx.Response:
        headers = {"Origin": origin or self.url}
        if htmx:
            headers["HX-Request"] = "true"
        return self.http.post(path, data=data, headers=headers)

    def upload(
        self, fields: dict[str, str], files: dict[str, Any], *, csrf: str | None
    ) -> httpx.Response:
        """The upload form as htmx sends it: multipart, the CSRF token in a header."""
        headers = {"Origin": self.url, "HX-Request": "true"}
        if csrf is not None:
            headers["X-CSRF-Token"] = csrf
        return self.http.post("/console/models/upload", data=fields, files=files, headers=headers)

    def sign_in(self, token: str, next_path: str = "/console") -> httpx.Response:
        page = self.get("/console/sign-in")
        form = {"csrf_token": form_token(page.text), "token": token, "next": next_path}
        self.token = token
        return self.post("/console/sign-in", form)

    def csrf(self, path: str = "/console/") -> str:
        return form_token(self.get(path).text)


@contextmanager
def signed_in(url: str, token: str) -> Iterator[Browser]:
    """A browser signed in to the console at ``url`` with ``token``; closed afterwards."""
    with Browser(url) as browser:
        browser.sign_in(token)
        yield browser


@contextmanager
def signed_in_as(store: Store, url: str, role: str, name: str | None = None) -> Iterator[Browser]:
    """A browser signed in with a new token of ``role`` (``browser.token`` is its secret)."""
    extra = {} if name is None else {"name": name}
    token = tokens.create_token(store, role=role, **extra)
    with signed_in(url, token.token) as browser:
        yield browser


def form_token(page: str) -> str:
    found = HIDDEN_CSRF.search(page)
    assert found is not None, "the page has no form with a CSRF token"
    return html.unescape(found.group(1))


def upload_model(store: Store, path: Path, name: str, **kw: Any) -> ModelVersion:
    return upload.upload_model(
        store, principal=LOCAL_USER, inspector=inspect_here, source=path, name=name, **kw
    )


def text_of(page: str) -> str:
    """The page's text without tags, spaces collapsed: what a reader sees."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())
