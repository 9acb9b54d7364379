"""Vendored JS/CSS at /static/vendor/<path>, and the API docs page that loads them.

The files are public (no token): they are the same third-party files anyone can download, and a
browser fetches them before anyone has signed in. Only paths that ``vendored.toml`` lists are
served, compared as strings, so ``..``, absolute paths and any file the manifest does not name
are 404 without touching the filesystem.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from cloche import vendor
from cloche.errors import NotFound

# URLs carry the file's hash (``asset_url``), so a new version is a new URL: cache for good.
CACHE_CONTROL = "public, max-age=31536000, immutable"
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".woff2": "font/woff2",
}
SWAGGER_PARAMETERS = {
    # Swagger UI would send the spec to an online validator for its badge: not air-gapped.
    "validatorUrl": None,
}

router = APIRouter(include_in_schema=False)


@router.api_route(vendor.URL_PREFIX + "/{path:path}", methods=["GET", "HEAD"])
def vendored_file(path: str) -> FileResponse:
    """One vendored file, with a long-lived cache header."""
    entry = vendor.lookup(path)
    media_type = MEDIA_TYPES.get(entry.file.suffix) if entry is not None else None
    # A listed file replaced by a link, or under a linked folder, or gone, is not served: what
    # is served is what was hashed, inside this package.
    if entry is None or media_type is None or not _plain_file(entry):
        raise NotFound(
            f"no vendored file {path!r}",
            hint="vendored files are linked from the pages that use them; see vendored.toml",
        )
    headers = {
        "Cache-Control": CACHE_CONTROL,
        "X-Content-Type-Options": "nosniff",
        "ETag": f'"{entry.sha256}"',
    }
    return FileResponse(entry.file, media_type=media_type, headers=headers)


def _plain_file(entry: vendor.VendoredFile) -> bool:
    path = vendor.VENDOR_DIR / entry.path
    return path.is_file() and path.resolve() == path.absolute()


def docs_page(openapi_url: str, title: str) -> HTMLResponse:
    """Swagger UI from the vendored files, so the API docs work with no internet."""
    page = get_swagger_ui_html(
        openapi_url=openapi_url,
        title=title,
        swagger_js_url=vendor.asset_url("swagger-ui/swagger-ui-bundle.js"),
        swagger_css_url=vendor.asset_url("swagger-ui/swagger-ui.css"),
        swagger_favicon_url=vendor.asset_url("swagger-ui/favicon-32x32.png"),
        swagger_ui_parameters=SWAGGER_PARAMETERS,
    )
    # FastAPI's page names no language; screen readers need one to pick a voice.
    html = bytes(page.body).decode().replace("<html>", '<html lang="en">', 1)
    return HTMLResponse(html)


def add_docs_route(app: FastAPI, docs_url: str) -> None:
    """Serve ``docs_page`` at ``docs_url`` in place of FastAPI's, which loads from a CDN."""
    openapi_url, title = app.openapi_url or "", f"{app.title} API"

    def api_docs() -> HTMLResponse:
        return docs_page(openapi_url, title)

    app.add_api_route(docs_url, api_docs, methods=["GET"], include_in_schema=False)
