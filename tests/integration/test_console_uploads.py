"""Uploading a model from the console: the REST upload's service, roles, caps and CSRF."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloche.auth import tokens
from cloche.errors import ModelNotFound
from cloche.registry import service as registry
from cloche.store.store import Store

from ._console import Browser, text_of
from .conftest import LiveServer, ServerFactory


def _signed_in(server: LiveServer, token: str) -> Browser:
    browser = Browser(server.url)
    browser.sign_in(token)
    return browser


def test_an_upload_adds_a_version_with_its_aliases(
    live_server: LiveServer, store: Store, sklearn_model_file: Path
) -> None:
    with _signed_in(live_server, live_server.token) as admin:
        assert 'id="upload-form"' in admin.get("/console/models").text
        response = admin.upload(
            {"name": "churn", "aliases": "staging", "description": "first"},
            {"file": ("churn.joblib", sklearn_model_file.read_bytes())},
            csrf=admin.csrf(),
        )
    assert response.status_code == 201 and "uploaded churn:1 (sklearn)" in text_of(response.text)
    assert response.headers["HX-Retarget"] == "#upload-form"
    version = registry.get_version(store, "churn@staging")
    assert (version.version, version.description) == (1, "first")


def test_a_deployer_gets_the_apis_refusal_of_code_formats_beside_the_form(
    live_server: LiveServer, store: Store, sklearn_model_file: Path
) -> None:
    deployer = tokens.create_token(store, role="deployer")
    with _signed_in(live_server, deployer.token) as browser:
        response = browser.upload(
            {"name": "churn"},
            {"file": ("churn.joblib", sklearn_model_file.read_bytes())},
            csrf=browser.csrf(),
        )
    assert response.status_code == 403 and 'id="upload-form"' in response.text
    assert "publisher" in text_of(response.text)
    with pytest.raises(ModelNotFound):
        registry.get_model(store, "churn")


@pytest.mark.parametrize("csrf", [None, "wrong"], ids=["missing", "wrong"])
def test_an_upload_without_the_csrf_header_is_forbidden(
    live_server: LiveServer, store: Store, sklearn_model_file: Path, csrf: str | None
) -> None:
    with _signed_in(live_server, live_server.token) as admin:
        response = admin.upload(
            {"name": "churn", "csrf_token": admin.csrf()},  # a field is not read from multipart
            {"file": ("churn.joblib", sklearn_model_file.read_bytes())},
            csrf=csrf,
        )
    assert response.status_code == 403
    with pytest.raises(ModelNotFound):
        registry.get_model(store, "churn")


def test_a_viewer_has_no_upload_form_and_a_forged_upload_is_forbidden(
    live_server: LiveServer, store: Store, sklearn_model_file: Path
) -> None:
    viewer = tokens.create_token(store, role="viewer")
    with _signed_in(live_server, viewer.token) as browser:
        assert 'id="upload-form"' not in browser.get("/console/models").text
        response = browser.upload(
            {"name": "churn"},
            {"file": ("churn.joblib", sklearn_model_file.read_bytes())},
            csrf=browser.csrf(),
        )
    assert response.status_code == 403 and "may not write" in text_of(response.text)


@pytest.mark.parametrize(
    ("fields", "files", "status", "says"),
    [
        ({"name": "churn"}, {}, 400, "choose a model file"),
        ({"name": "bad name!"}, {"file": ("m.joblib", b"x")}, 422, "invalid"),
        ({"name": "churn"}, {"file": ("../m.joblib", b"x")}, 400, "unsafe upload file name"),
        ({"name": "churn"}, {"file": ("notes.txt", b"hello")}, 422, ""),
    ],
    ids=["no-file", "bad-name", "path-escape", "not-a-model"],
)
def test_bad_uploads_are_refused_with_a_message_beside_the_form(
    live_server: LiveServer,
    store: Store,
    fields: dict[str, str],
    files: dict[str, tuple[str, bytes]],
    status: int,
    says: str,
) -> None:
    with _signed_in(live_server, live_server.token) as admin:
        response = admin.upload(fields, files, csrf=admin.csrf())
    assert response.status_code == status and 'class="field-error"' in response.text
    assert says.lower() in text_of(response.text).lower()
    assert registry.list_models(store) == []


def test_an_upload_over_the_cap_is_refused_with_413(start_server: ServerFactory) -> None:
    server = start_server(store={"max_upload_mb": 1})
    with _signed_in(server, server.token) as admin:
        response = admin.upload(
            {"name": "big"}, {"file": ("big.onnx", b"\0" * (2 * 2**20))}, csrf=admin.csrf()
        )
    assert response.status_code == 413
