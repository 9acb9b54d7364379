from pathlib import Path

import pytest
from pydantic import ValidationError

from cloche.config import Settings
from cloche.hosts import is_loopback


def test_defaults_keep_everything_under_home(tmp_path: Path) -> None:
    s = Settings(home=tmp_path)
    assert s.database_url == f"sqlite:///{tmp_path.resolve()}/cloche.db"
    assert s.artifacts_url == str((tmp_path / "artifacts").resolve())
    assert s.server.host == "127.0.0.1" and not s.auth_required


def test_environment_configures_nested_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOCHE_DB_URL", "postgresql://u@h/db")
    monkeypatch.setenv("CLOCHE_SERVER__PORT", "9001")
    monkeypatch.setenv("CLOCHE_STORE__MAX_UPLOAD_MB", "3")
    monkeypatch.setenv("CLOCHE_SERVER__MAX_JSON_KB", "64")
    s = Settings()
    assert s.database_url == "postgresql://u@h/db"
    assert s.server.port == 9001 and s.max_upload_bytes == 3 * 1024 * 1024
    assert s.max_json_bytes == 64 * 1024


def test_api_json_bodies_are_capped_at_1_mib_by_default() -> None:
    assert Settings().max_json_bytes == 1024 * 1024


def test_public_bind_requires_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOCHE_SERVER__HOST", "0.0.0.0")
    assert Settings().auth_required
    monkeypatch.setenv("CLOCHE_AUTH__REQUIRED", "false")
    with pytest.raises(ValidationError, match="without authentication"):
        Settings()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("127.0.0.2", True),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("value", ["0", "-1", "3601", "soon", "nan"])
def test_a_bad_load_wait_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CLOCHE_SERVING__LOAD_WAIT_SECONDS", value)
    with pytest.raises(ValidationError, match="load_wait_seconds"):
        Settings()


def test_a_load_wait_within_bounds_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOCHE_SERVING__LOAD_WAIT_SECONDS", "2.5")
    assert Settings().serving.load_wait_seconds == 2.5
