"""Upgrades: a store written at an old schema revision opens with today's code, migrates to the
newest revision, keeps its rows and serves; a store from a newer cloche is refused clearly."""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

import cloche
from cloche.auth import tokens
from cloche.config import Settings
from cloche.errors import SchemaTooNew
from cloche.registry.inspection import InspectRequest, inspect_here
from cloche.store.artifacts import ArtifactStore, combined_digest
from cloche.store.db import current_revision, head_revision, make_engine, upgrade
from cloche.store.store import Store
from tests.e2e._cli import cloche as run_cli
from tests.e2e._servers import cloche_up

pytestmark = pytest.mark.slow

OLD = "0002"  # endpoints and deployments, before payload-log rates, jobs and monitoring
ROW = {"instances": [[0.1, 0.2, 0.3, 0.4]]}


def write_store_at_old_revision(settings: Settings, model_file: Path) -> str:
    """What a cloche of revision 0002 left behind: its tables, rows written with its columns,
    and the model's files in the artifact store. The viewer token it had issued."""
    home = settings.home.resolve()
    artifacts = ArtifactStore(settings.artifacts_url, cache_dir=home / "cache")
    key = "models/churn/0123456789abcdef"
    files = artifacts.put(key, model_file)
    signature = inspect_here(InspectRequest("sklearn", artifacts.local_dir(key, files)))
    token_id = secrets.token_hex(6)
    token = f"{tokens.PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    now = datetime.now(UTC)
    engine = make_engine(settings.database_url)
    with engine.begin() as conn:
        upgrade(conn, OLD)
        insert = [
            "INSERT INTO models (id, name, description, created_at, updated_at, created_by) "
            "VALUES (1, 'churn', 'from 0002', :now, :now, 'old')",
            "INSERT INTO model_versions (id, model_id, version, framework, artifact_key, files, "
            "sha256, size_bytes, signature, metrics, labels, description, created_at, created_by)"
            " VALUES (1, 1, 1, 'sklearn', :key, :files, :sha, :size, :signature, '{}', '{}', '',"
            " :now, 'old')",
            "INSERT INTO model_aliases (id, model_id, alias, version_id, updated_at) "
            "VALUES (1, 1, 'prod', 1, :now)",
            "INSERT INTO api_tokens (id, name, role, secret_hash, created_at, created_by) "
            "VALUES (:token_id, 'dashboard', 'viewer', :hash, :now, 'old')",
            "INSERT INTO endpoints (id, name, description, created_at, updated_at, created_by) "
            "VALUES (1, 'churn', '', :now, :now, 'old')",
            "INSERT INTO deployments (id, endpoint_id, version_id, traffic, shadow, "
            "max_batch_size, timeout_ms, created_at, created_by) "
            "VALUES (1, 1, 1, 100, false, 64, 10000, :now, 'old')",
        ]
        values = {
            "now": now,
            "key": key,
            "files": json.dumps(files),
            "sha": combined_digest(files),
            "size": sum(f["size"] for f in files.values()),
            "signature": json.dumps(signature.to_dict()),
            "token_id": token_id,
            "hash": hashlib.sha256(token.encode()).hexdigest(),
        }
        for statement in insert:
            conn.execute(text(statement), values)
        assert current_revision(conn) == OLD
    engine.dispose()
    return token


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_store_from_an_old_revision_migrates_and_keeps_its_rows(
    tmp_path: Path, sklearn_model_file: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    db_url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    settings = Settings(home=tmp_path / "home", db_url=db_url)
    token = write_store_at_old_revision(settings, sklearn_model_file)

    store = Store.open(settings)  # what every entry point does first
    try:
        with store.db.engine.connect() as conn:
            assert current_revision(conn) == head_revision() != OLD
        assert tokens.authenticate(store, token).role == "viewer"
    finally:
        store.close()
    with cloche.Client(settings=settings) as sdk:
        prod = sdk.models.show("churn@prod")
        assert (prod.version, prod.framework, prod.created_by) == (1, "sklearn", "old")
        endpoint = sdk.endpoints.get("churn")
        # A column added since (0003) takes its default on the old rows.
        assert endpoint.log_sample_rate == 1.0
        deployed = [(d.model, d.version, d.traffic) for d in endpoint.deployments]
        assert deployed == [("churn", 1, 100)]
        # And the tables added since work.
        sdk.models.upload(sklearn_model_file, name="churn")
        assert sdk.audit.list(limit=5)


def test_a_migrated_old_store_serves_with_cloche_up(
    settings: Settings, sklearn_model_file: Path
) -> None:
    token = write_store_at_old_revision(settings, sklearn_model_file)
    with (
        cloche_up(settings.home, workers=1, env={"CLOCHE_AUTH__REQUIRED": "true"}) as up,
        httpx.Client(base_url=up.url, headers={"Authorization": f"Bearer {token}"}) as http,
    ):
        served = httpx.post(f"{up.url}/v1/models/churn:predict", json=ROW, headers=up.auth)
        assert served.status_code == 200 and served.json()["version"] == 1
        # The token issued at the old revision still opens the API (a viewer reads).
        listed = http.get("/api/v1/models")
        assert listed.status_code == 200 and listed.json()[0]["name"] == "churn"


def test_a_store_from_a_newer_cloche_is_refused_with_a_clear_message(
    settings: Settings,
) -> None:
    Store.open(settings).close()
    engine = make_engine(settings.database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0999_from_the_future'"))
    engine.dispose()

    with pytest.raises(SchemaTooNew, match="0999_from_the_future") as refused:
        Store.open(settings)
    assert "newer cloche" in refused.value.message
    result = run_cli("models", "list")
    assert result.exit_code == 6, result.output
    assert "schema revision '0999_from_the_future'" in result.output
    assert "unexpected error" not in result.output
    # Nothing was changed: the database still says what wrote it.
    engine = make_engine(settings.database_url)
    with engine.connect() as conn:
        assert current_revision(conn) == "0999_from_the_future"
    engine.dispose()
