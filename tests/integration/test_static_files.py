"""Vendored files and the API docs page over HTTP: public, cached, listed files only, offline."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import pytest

from cloche import vendor
from cloche.api.static import CACHE_CONTROL

if TYPE_CHECKING:
    from tests.integration.conftest import LiveServer

BUNDLE = "swagger-ui/swagger-ui-bundle.js"


def _raw_get(url: str, target: str, host: str | None = None) -> tuple[int, bytes]:
    """GET ``target`` byte for byte (httpx would normalise ``..``); status and body."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        head = f"GET {target} HTTP/1.1\r\nHost: {host or parts.netloc}\r\nConnection: close\r\n\r\n"
        sock.sendall(head.encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def test_vendored_file_is_served_without_a_token_with_a_long_cache(
    live_server: LiveServer,
) -> None:
    response = httpx.get(live_server.url + vendor.asset_url(BUNDLE))
    assert response.status_code == 200
    assert response.headers["cache-control"] == CACHE_CONTROL
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content == (vendor.VENDOR_DIR / BUNDLE).read_bytes()


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("swagger-ui/swagger-ui.css", "text/css; charset=utf-8"),
        ("swagger-ui/favicon-32x32.png", "image/png"),
        ("uplot/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
        ("axe-core/axe.min.js", "text/javascript; charset=utf-8"),
    ],
)
def test_each_kind_of_file_has_its_content_type(
    live_server: LiveServer, path: str, media_type: str
) -> None:
    response = httpx.head(f"{live_server.url}/static/vendor/{path}")
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert int(response.headers["content-length"]) == (vendor.VENDOR_DIR / path).stat().st_size


@pytest.mark.parametrize(
    "target",
    [
        "/static/vendor/",
        "/static/vendor/swagger-ui",
        "/static/vendor/swagger-ui/",
        "/static/vendor/swagger-ui/LICENSE",
        "/static/vendor/vendored.toml",
        "/static/vendor/__init__.py",
        "/static/vendor/nothing.js",
        "/static/vendor/../api/app.py",
        "/static/vendor/swagger-ui/../../api/app.py",
        "/static/vendor/%2e%2e/api/app.py",
        "/static/vendor/%2E%2E%2f%2E%2E%2fconfig.py",
        "/static/vendor/swagger-ui/..%2f..%2fvendored.toml",
        "/static/vendor//etc/passwd",
        "/static/vendor/%2fetc%2fpasswd",
        "/static/vendor/./swagger-ui/swagger-ui.css",
        "/static/vendor/SWAGGER-UI/swagger-ui.css",
        "/static/vendor/swagger-ui/swagger-ui.css%00.py",
    ],
)
def test_anything_but_a_listed_file_is_404(live_server: LiveServer, target: str) -> None:
    status, body = _raw_get(live_server.url, target)
    assert status == 404, target
    assert body.startswith(b'{"error":'), body  # the API's error shape, no listing


def test_a_listed_file_replaced_by_a_link_is_not_served(
    live_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "vendor"
    shutil.copytree(vendor.VENDOR_DIR, copy)
    (copy / BUNDLE).unlink()
    (copy / BUNDLE).symlink_to(vendor.VENDOR_DIR / BUNDLE)
    shutil.rmtree(copy / "uplot")
    (copy / "uplot").symlink_to(vendor.VENDOR_DIR / "uplot", target_is_directory=True)
    monkeypatch.setattr(vendor, "VENDOR_DIR", copy)
    assert httpx.get(f"{live_server.url}/static/vendor/{BUNDLE}").status_code == 404
    assert httpx.get(f"{live_server.url}/static/vendor/uplot/uPlot.min.css").status_code == 404
    css = httpx.get(f"{live_server.url}/static/vendor/swagger-ui/swagger-ui.css")
    assert css.status_code == 200  # the plain files of the copy still are


def test_vendored_files_keep_the_host_and_origin_guard(live_server: LiveServer) -> None:
    status, _ = _raw_get(live_server.url, vendor.asset_url(BUNDLE), host="evil.example")
    assert status == 403
    foreign = httpx.get(
        live_server.url + vendor.asset_url(BUNDLE), headers={"Origin": "http://evil.example"}
    )
    assert foreign.status_code == 403


def test_api_docs_load_swagger_ui_from_the_server_only(live_server: LiveServer) -> None:
    server = live_server
    page = httpx.get(f"{server.url}/api/docs")
    assert page.status_code == 200
    html = page.text
    for path in (BUNDLE, "swagger-ui/swagger-ui.css", "swagger-ui/favicon-32x32.png"):
        assert vendor.asset_url(path) in html
    assert "http://" not in html and "https://" not in html, "the page names another host"
    assert "'/api/openapi.json'" in html
    assert '<html lang="en">' in html
    assert httpx.get(f"{server.url}/api/openapi.json").status_code == 200


def test_redoc_is_not_served(live_server: LiveServer) -> None:
    assert httpx.get(f"{live_server.url}/api/redoc").status_code == 404


def test_the_openapi_document_does_not_list_static_routes(live_server: LiveServer) -> None:
    paths = httpx.get(f"{live_server.url}/api/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith(("/static", "/api/docs"))]
