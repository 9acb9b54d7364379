"""Back up a store while `cloche up` serves it, wipe the home, restore, serve again: the registry,
aliases, tokens and payload log are back and the endpoint answers."""

from __future__ import annotations

import json
import shutil
import stat
import threading
from pathlib import Path

import httpx
import pytest

import cloche
from cloche.config import Settings
from tests.e2e._cli import cloche as run_cli
from tests.e2e._servers import cloche_up

pytestmark = pytest.mark.slow

ROW = {"instances": [[0.1, 0.2, 0.3, 0.4]]}
PREDICT = "/v1/models/churn:predict"


def _registry(settings: Settings) -> dict[str, object]:
    with cloche.Client(settings=settings) as sdk:
        detail = sdk.models.get("churn")
        endpoint = sdk.endpoints.get("churn")
        return {
            "versions": [(v.version, v.sha256, v.aliases) for v in detail.versions],
            "deployments": [(d.model, d.version, d.traffic) for d in endpoint.deployments],
            "tokens": sorted((t.id, t.role, t.name) for t in sdk.tokens.list()),
        }


def _logged_ids(settings: Settings) -> set[str]:
    with cloche.Client(settings=settings) as sdk:
        return set(sdk.logs.read("churn", since="1d").column("request_id").to_pylist())


def test_a_store_backed_up_while_serving_comes_back_whole_after_a_wipe(
    settings: Settings, sklearn_model_file: Path, tmp_path: Path
) -> None:
    with cloche.Client(settings=settings) as sdk:
        sdk.models.upload(sklearn_model_file, name="churn")
        sdk.models.upload(sklearn_model_file, name="churn")
        sdk.models.alias("churn:2", "prod")
        sdk.endpoints.create("churn")
        sdk.endpoints.deploy("churn", "churn@prod")
        viewer = sdk.tokens.create(role="viewer", name="dashboard").token
    archive = tmp_path / "backups" / "cloche.tar.gz"
    archive.parent.mkdir()

    with cloche_up(settings.home, workers=1) as up, httpx.Client(base_url=up.url) as http:
        answered = [http.post(PREDICT, json=ROW).json()["request_id"] for _ in range(5)]
        # Predictions keep arriving while the backup runs: it must not wait for, or tear, them.
        stop = threading.Event()
        during: list[int] = []

        def load() -> None:
            with httpx.Client(base_url=up.url, timeout=10) as client:
                while not stop.is_set():
                    during.append(client.post(PREDICT, json=ROW).status_code)

        loader = threading.Thread(target=load)
        loader.start()
        try:
            made = run_cli("backup", "create", archive, "--json")
        finally:
            stop.set()
            loader.join(timeout=15)
        assert made.exit_code == 0, made.output
        assert during and set(during) == {200}
    summary = json.loads(made.stdout)
    assert summary["tables"]["model_versions"] == 2 and summary["log_files"] >= 1
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    before, logged = _registry(settings), _logged_ids(settings)
    assert set(answered) <= logged

    shutil.rmtree(settings.home)
    restored = run_cli("backup", "restore", archive)
    assert restored.exit_code == 0, restored.output
    assert _registry(settings) == before
    after = _logged_ids(settings)
    assert set(answered) <= after <= logged  # what was logged by the backup's time, no more

    with cloche_up(settings.home, workers=1) as up, httpx.Client(base_url=up.url) as http:
        answer = http.post(PREDICT, json=ROW)
        assert answer.status_code == 200 and answer.json()["version"] == 2
        # The viewer token made before the backup still opens the API; the new local token too.
        seen = http.get("/api/v1/models", headers={"Authorization": f"Bearer {viewer}"})
        assert seen.status_code == 200 and [m["name"] for m in seen.json()] == ["churn"]
        assert http.get("/api/v1/tokens", headers=up.auth).status_code == 200
    assert len(_logged_ids(settings)) == len(after) + 1


def test_restore_over_a_live_store_is_refused_and_changes_nothing(
    settings: Settings, sklearn_model_file: Path, tmp_path: Path
) -> None:
    with cloche.Client(settings=settings) as sdk:
        sdk.models.upload(sklearn_model_file, name="churn")
    archive = tmp_path / "b.tar.gz"
    assert run_cli("backup", "create", archive).exit_code == 0
    with cloche.Client(settings=settings) as sdk:
        sdk.models.upload(sklearn_model_file, name="churn")
    refused = run_cli("backup", "restore", archive)
    assert refused.exit_code == 5, refused.output
    assert "holds data" in refused.output and "--force" in refused.output
    with cloche.Client(settings=settings) as sdk:
        assert [v.version for v in sdk.models.get("churn").versions] == [1, 2]
