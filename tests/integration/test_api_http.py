"""The REST API over raw HTTP against a live server: error shape, auth, limits, origin checks."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psutil
import pytest

import cloche
from cloche.api.app import create_app
from cloche.auth import tokens
from cloche.client._http import local_token_for
from cloche.config import Settings
from cloche.errors import Timeout, Unavailable
from cloche.store.store import Store
from tests.integration._slow_upload import post_huge_body

if TYPE_CHECKING:
    from tests.integration.conftest import LiveServer, ServerFactory

MB = 1024 * 1024


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code and body["message"]
    return dict(body)


def _upload(url: str, path: Path, name: str = "churn", **kw: Any) -> httpx.Response:
    files = [("files", (path.name, path.read_bytes()))]
    # The server inspects the upload in a child that imports the framework: seconds on a busy
    # machine, past httpx's 5 s default.
    kw.setdefault("timeout", 60)
    return httpx.post(f"{url}/api/v1/models", data={"name": name}, files=files, **kw)


def _token(settings: Settings, role: str) -> tokens.NewToken:
    store = Store.open(settings)
    try:
        return tokens.create_token(store, role=role, name=f"test {role}")
    finally:
        store.close()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_errors_have_one_json_shape(live_server: LiveServer) -> None:
    with httpx.Client(base_url=f"{live_server.url}/api/v1", headers=live_server.auth) as api:
        assert (
            "cloche models list" in _error(api.get("/models/nope"), 404, "model_not_found")["hint"]
        )
        _error(api.get("/models/bad!name"), 422, "invalid_name")
        _error(api.get("/models/churn/versions/first"), 422, "invalid_reference")
        assert "/api/docs" in _error(api.get("/nope"), 404, "not_found")["hint"]
        assert "GET" in _error(api.post("/health"), 405, "bad_request")["hint"]
        invalid = _error(api.get("/audit", params={"limit": "x"}), 422, "invalid_input")
        assert "limit" in invalid["message"] and "Traceback" not in invalid["message"]
        _error(api.put("/models/churn/aliases/prod", json={}), 422, "invalid_input")


def test_health_and_openapi_list_the_routes(live_server: LiveServer) -> None:
    assert httpx.get(f"{live_server.url}/api/v1/health").json()["status"] == "ok"
    paths = httpx.get(f"{live_server.url}/api/openapi.json").json()["paths"]
    for path in (
        "/api/v1/models",
        "/api/v1/models/{name}",
        "/api/v1/models/{name}/versions/{version}",
        "/api/v1/models/{name}/aliases/{alias}",
        "/api/v1/models/{name}/versions/{version}/baseline",
        "/api/v1/models/{name}/versions/{version}/files/{path}",
        "/api/v1/tokens",
        "/api/v1/tokens/{token_id}",
        "/api/v1/audit",
    ):
        assert path in paths
    assert paths["/api/v1/models"]["post"]["summary"].startswith("Upload a model")
    assert httpx.get(f"{live_server.url}/api/docs").status_code == 200


def test_rest_without_token_on_loopback_is_refused(live_server: LiveServer) -> None:
    url = f"{live_server.url}/api/v1/models"
    response = httpx.get(url)
    assert "cloche tokens local" in _error(response, 401, "unauthorized")["hint"]
    assert response.headers["www-authenticate"] == "Bearer"
    _error(
        httpx.post(f"{live_server.url}/api/v1/tokens", json={"role": "admin"}), 401, "unauthorized"
    )
    assert httpx.get(url, headers=live_server.auth).status_code == 200
    assert httpx.get(f"{live_server.url}/api/v1/health").status_code == 200  # liveness stays open


def test_http_client_on_loopback_picks_up_the_local_token(live_server: LiveServer) -> None:
    with cloche.Client(live_server.url) as sdk:  # no token given, none in CLOCHE_TOKEN
        assert sdk.models.list() == []
        assert [t.name for t in sdk.tokens.list()] == ["local admin"]


def test_the_local_token_is_offered_only_to_loopback_urls(live_server: LiveServer) -> None:
    home = live_server.settings.home
    assert local_token_for(live_server.url, lambda: home) == live_server.token
    assert local_token_for("http://localhost:8080", lambda: home) == live_server.token
    assert local_token_for("http://models.example:8080", lambda: home) is None
    assert local_token_for("http://10.0.0.7:8080", lambda: home) is None


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/api/v1/tokens", "application/json"),
        ("/api/v1/models", "multipart/form-data; boundary=b"),
        ("/api/v1/baselines", "multipart/form-data; boundary=b"),
    ],
)
@pytest.mark.parametrize("token", [None, "cl_000000000000_nope"])
def test_a_huge_body_without_a_valid_token_is_refused_before_it_is_read(
    live_server: LiveServer, path: str, content_type: str, token: str | None
) -> None:
    server = psutil.Process()  # the test server runs in this process
    before = server.memory_info().rss
    headers = _bearer(token) if token else None
    answer = post_huge_body(
        live_server.url + path, declared=200 * MB, content_type=content_type, headers=headers
    )
    assert answer.status == 401 and b"unauthorized" in answer.body
    assert answer.seconds < 1.0
    assert answer.sent < 200 * MB
    assert server.memory_info().rss - before < 50 * MB
    tmp = live_server.settings.home / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []


def test_a_json_body_over_the_cap_is_refused_with_413_naming_the_setting(
    start_server: ServerFactory,
) -> None:
    server = start_server(server={"max_json_kb": 4})
    url = f"{server.url}/api/v1/tokens"
    big = {"role": "viewer", "name": "x" * 8000}
    body = _error(httpx.post(url, json=big, headers=server.auth), 413, "payload_too_large")
    assert "4 KiB" in body["message"] and "CLOCHE_SERVER__MAX_JSON_KB" in body["hint"]

    def chunks() -> Iterator[bytes]:
        yield b'{"role": "viewer", "name": "'
        yield b"x" * 8000
        yield b'"}'

    headers = {"Content-Type": "application/json", **server.auth}
    _error(httpx.post(url, content=chunks(), headers=headers), 413, "payload_too_large")
    small = httpx.post(url, json={"role": "viewer"}, headers=server.auth)
    assert small.status_code == 201


def test_a_bad_token_is_refused_even_on_loopback(live_server: LiveServer) -> None:
    url = f"{live_server.url}/api/v1/models"
    response = httpx.get(url, headers=_bearer("cl_000000000000_nope"))
    _error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    _error(httpx.get(url, headers={"Authorization": "Basic dXNlcjpwdw=="}), 401, "unauthorized")


def test_roles_limit_what_a_token_may_do(live_server: LiveServer, sklearn_model_file: Path) -> None:
    api = f"{live_server.url}/api/v1"
    viewer = _bearer(_token(live_server.settings, "viewer").token)
    predictor = _bearer(_token(live_server.settings, "predictor").token)
    admin = live_server.auth
    assert _upload(live_server.url, sklearn_model_file, headers=admin).status_code == 201
    forbidden = _error(
        _upload(live_server.url, sklearn_model_file, headers=predictor), 403, "forbidden"
    )
    assert "deployer" in forbidden["hint"]
    _error(httpx.delete(f"{api}/models/churn", headers=viewer), 403, "forbidden")
    _error(httpx.get(f"{api}/models", headers=predictor), 403, "forbidden")
    _error(httpx.get(f"{api}/tokens", headers=viewer), 403, "forbidden")
    _error(httpx.post(f"{api}/tokens", headers=viewer, json={"role": "admin"}), 403, "forbidden")
    assert httpx.get(f"{api}/models/churn", headers=viewer).json()["latest_version"] == 1


def _chunked_multipart(size: int) -> Iterator[bytes]:
    yield b'--b\r\nContent-Disposition: form-data; name="name"\r\n\r\nbig\r\n'
    yield b'--b\r\nContent-Disposition: form-data; name="files"; filename="big.joblib"\r\n\r\n'
    for _ in range(size // (64 * 1024)):
        yield b"\x80" * (64 * 1024)
    yield b"\r\n--b--\r\n"


def test_oversized_uploads_are_refused_with_413(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    server = start_server(store={"max_upload_mb": 1})
    big = tmp_path / "big.joblib"
    big.write_bytes(b"\x80" * (2 * MB))
    response = _upload(server.url, big, name="big", headers=server.auth)
    assert "Content-Length" in response.request.headers
    assert "MAX_UPLOAD_MB" in _error(response, 413, "payload_too_large")["hint"]
    chunked = httpx.post(
        f"{server.url}/api/v1/models",
        content=_chunked_multipart(2 * MB),
        headers={"Content-Type": "multipart/form-data; boundary=b", **server.auth},
    )
    assert chunked.request.headers["Transfer-Encoding"] == "chunked"
    _error(chunked, 413, "payload_too_large")
    assert httpx.get(f"{server.url}/api/v1/models", headers=server.auth).json() == []
    assert list((server.settings.home / "tmp").glob("*")) == []


@pytest.mark.parametrize("filename", ["../x", "/etc/passwd", "a/../../x", "sub\\x", "a//b"])
def test_unsafe_upload_filenames_are_refused(
    live_server: LiveServer, filename: str, tmp_path: Path
) -> None:
    before = sorted(tmp_path.rglob("*"))
    response = httpx.post(
        f"{live_server.url}/api/v1/models",
        data={"name": "evil"},
        files=[("files", (filename, b"\x80payload"))],
        headers=live_server.auth,
    )
    _error(response, 400, "bad_request")
    assert sorted(tmp_path.rglob("*")) == before
    assert not (live_server.settings.home / "artifacts" / "models" / "evil").exists()


def test_origin_and_host_checks_stop_browsers_from_other_sites(live_server: LiveServer) -> None:
    url = f"{live_server.url}/api/v1/models"
    admin = live_server.auth
    _error(httpx.get(url, headers={"Origin": "http://evil.example", **admin}), 403, "forbidden")
    _error(httpx.get(url, headers={"Origin": "null", **admin}), 403, "forbidden")
    port = live_server.url.rsplit(":", 1)[1]
    _error(httpx.get(url, headers={"Origin": "http://127.0.0.1:1", **admin}), 403, "forbidden")
    assert httpx.get(url, headers={"Origin": live_server.url, **admin}).status_code == 200
    _error(httpx.get(url, headers={"Host": f"evil.example:{port}", **admin}), 403, "forbidden")
    for host in (f"localhost:{port}", f"[::1]:{port}", "127.0.0.1"):
        assert httpx.get(url, headers={"Host": host, **admin}).status_code == 200


def test_token_list_never_holds_secrets(live_server: LiveServer) -> None:
    with httpx.Client(base_url=f"{live_server.url}/api/v1", headers=live_server.auth) as api:
        created = api.post("/tokens", json={"role": "viewer", "name": "ci"})
        assert created.status_code == 201 and created.headers["cache-control"] == "no-store"
        secret = created.json()["token"]
        listed = api.get("/tokens")
        assert secret not in listed.text and secret.rsplit("_", 1)[1] not in listed.text
        assert live_server.token not in listed.text
        local, row = listed.json()
        assert local["name"] == "local admin"
        assert set(row) == {"id", "name", "role", "created_at", "created_by", "revoked_at"}
        assert api.delete(f"/tokens/{row['id']}").json()["revoked_at"] is not None


def test_audit_records_upload_alias_and_token_changes(
    live_server: LiveServer, sklearn_model_file: Path
) -> None:
    admin = live_server.auth
    assert _upload(live_server.url, sklearn_model_file, headers=admin).status_code == 201
    with httpx.Client(base_url=f"{live_server.url}/api/v1", headers=admin) as api:
        moved = api.put("/models/churn/aliases/prod", json={"version": 1})
        assert moved.json()["aliases"] == ["prod"]
        other = api.put("/models/churn/aliases/prod", json={"ref": "fraud:1"})
        _error(other, 422, "invalid_input")
        api.post("/tokens", json={"role": "viewer"})
        entries = api.get("/audit").json()
        actions = ["token.create", "alias.move", "model.upload", "token.create"]
        assert [e["action"] for e in entries] == actions
        # The local admin token acts as itself; its own creation was the system's.
        local_actor = f"token:{live_server.token.split('_')[1]}"
        assert [e["actor"] for e in entries] == [local_actor] * 3 + ["system"]
        [alias] = api.get("/audit", params={"resource": "churn@prod"}).json()
        assert alias["after"] == {"version": 1}


def test_artifact_files_download_only_listed_paths(
    live_server: LiveServer, sklearn_model_file: Path
) -> None:
    admin = live_server.auth
    version = _upload(live_server.url, sklearn_model_file, headers=admin).json()
    files = f"{live_server.url}/api/v1/models/churn/versions/1/files"
    response = httpx.get(f"{files}/churn.joblib", headers=admin)
    assert response.content == sklearn_model_file.read_bytes()
    assert response.headers["x-content-sha256"] == version["files"]["churn.joblib"]["sha256"]
    _error(httpx.get(f"{files}/..%2F..%2F..%2Fcloche.db", headers=admin), 404, "artifact_not_found")
    _error(httpx.get(f"{files}/other.bin", headers=admin), 404, "artifact_not_found")


def test_a_server_requiring_auth_accepts_only_valid_tokens(start_server: ServerFactory) -> None:
    server = start_server(auth={"required": True})
    url = f"{server.url}/api/v1/models"
    assert "Bearer" in _error(httpx.get(url), 401, "unauthorized")["hint"]
    admin = _token(server.settings, "admin")
    assert httpx.get(url, headers=_bearer(admin.token)).status_code == 200
    revoked = httpx.delete(f"{server.url}/api/v1/tokens/{admin.id}", headers=_bearer(admin.token))
    assert revoked.status_code == 200
    _error(httpx.get(url, headers=_bearer(admin.token)), 401, "unauthorized")


def test_an_unexpected_failure_is_a_plain_500(settings: Settings) -> None:
    app = create_app(settings)
    admin = _bearer(_token(settings, "admin").token)

    def boom() -> None:
        raise RuntimeError("secret internals")

    app.add_api_route("/api/v1/boom", boom)

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            return await http.get("/api/v1/boom", headers=admin)

    response = asyncio.run(call())
    body = _error(response, 500, "internal_error")
    assert "secret internals" not in response.text and "log" in body["hint"]
    app.state.store.close()


def test_an_unreachable_or_silent_server_names_its_url() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts connections in the kernel, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with cloche.Client(url, timeout=0.3) as sdk, pytest.raises(Timeout, match=re.escape(url)):
            sdk.models.list()
    with cloche.Client(url) as sdk, pytest.raises(Unavailable, match=re.escape(url)):
        sdk.models.list()  # the port is closed now


@pytest.mark.postgres
def test_the_sdk_over_http_on_postgresql(
    start_server: ServerFactory, pg_url: str, sklearn_model_file: Path
) -> None:
    server = start_server(db_url=pg_url)
    with cloche.Client(server.url) as sdk:
        sdk.models.upload(sklearn_model_file, name="churn", aliases=["prod"])
        sdk.models.upload(sklearn_model_file, name="churn", labels={"team": "risk"})
        assert sdk.models.alias("churn:2", "prod").version == 2
        assert [m.name for m in sdk.models.list(labels={"team": "risk"})] == ["churn"]
        assert len(sdk.models.load("churn@prod").predict([[0.1, 0.2, 0.3, 0.4]])) == 1
        assert sdk.models.delete("churn").deleted_versions == [1, 2]
        assert [e.action for e in sdk.audit.list(resource_type="model")][:2] == [
            "model.delete",
            "alias.move",
        ]
