"""Pipeline schedules over REST: created, listed, paused, resumed and deleted by a deployer;
a viewer may list but not create; bad input is a 4xx that says what to fix."""

from __future__ import annotations

import httpx
import pytest

from cloche.auth.tokens import create_token
from cloche.pipelines import component, pipeline, registered
from cloche.store.store import Store
from tests.integration.conftest import LiveServer, ServerFactory


@component
def shout(word: str) -> str:
    return word.upper()


@pipeline(name="nightly")
def nightly(word: str = "hi") -> None:
    shout(word=word)


@pytest.fixture
def server(store: Store, start_server: ServerFactory) -> LiveServer:
    registered.register(store, nightly, source="# nightly", file_name="n.py", actor="test")
    return start_server(scheduler={"enabled": False})


def test_a_deployer_manages_a_schedule_over_rest(server: LiveServer) -> None:
    api = f"{server.url}/api/v1/pipeline-schedules"
    body = {"pipeline": "nightly", "cron": "0 6 * * 1", "params": {"word": "yo"}, "max_runs": 2}
    made = httpx.post(api, json=body, headers=server.auth)
    assert made.status_code == 201, made.text
    schedule_id = made.json()["id"]
    assert made.json()["params"] == {"word": "yo"} and made.json()["next_run_at"]
    assert [s["id"] for s in httpx.get(api, headers=server.auth).json()] == [schedule_id]
    paused = httpx.post(f"{api}/{schedule_id[:8]}/pause", headers=server.auth)
    assert paused.status_code == 200 and paused.json()["enabled"] is False
    resumed = httpx.post(f"{api}/{schedule_id}/resume", headers=server.auth)
    assert resumed.json()["enabled"] is True
    assert httpx.delete(f"{api}/{schedule_id}", headers=server.auth).status_code == 204
    assert httpx.get(f"{api}/{schedule_id}", headers=server.auth).status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"pipeline": "nope", "cron": "0 6 * * *"}, 404, "no registered pipeline 'nope'"),
        ({"pipeline": "nightly", "cron": "0 0 31 2 *"}, 422, "names no time that exists"),
        ({"pipeline": "nightly", "cron": "0 6 * * *", "params": {"x": 1}}, 422, "no parameter"),
    ],
)
def test_a_bad_schedule_is_refused_saying_why(
    server: LiveServer, body: dict[str, object], status: int, message: str
) -> None:
    answer = httpx.post(f"{server.url}/api/v1/pipeline-schedules", json=body, headers=server.auth)
    assert answer.status_code == status, answer.text
    assert message in answer.text


def test_a_viewer_lists_schedules_but_cannot_create_one(server: LiveServer, store: Store) -> None:
    token = create_token(store, role="viewer", name="looker").token
    headers = {"Authorization": f"Bearer {token}"}
    api = f"{server.url}/api/v1/pipeline-schedules"
    assert httpx.get(api, headers=headers).json() == []
    refused = httpx.post(api, json={"pipeline": "nightly", "cron": "0 6 * * *"}, headers=headers)
    assert refused.status_code == 403
    assert httpx.post(api, json={}).status_code == 401


@pytest.mark.parametrize("form", ["local", "http"])
def test_the_sdk_schedules_a_pipeline_in_both_forms_alike(
    server: LiveServer, form: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime

    import cloche

    monkeypatch.setenv("CLOCHE_HOME", str(server.settings.home))
    sdk = cloche.Client(server.url, token=server.token) if form == "http" else cloche.Client()
    with sdk:
        end = datetime(2999, 1, 1, tzinfo=UTC)
        made = sdk.pipelines.schedule("nightly", "0 6 * * 1", {"word": "yo"}, end=end, max_runs=3)
        assert (made.pipeline, made.params, made.max_runs, made.state) == (
            "nightly",
            {"word": "yo"},
            3,
            "active",
        )
        assert made.end_at == end
        assert [s.id for s in sdk.pipelines.schedules()] == [made.id]
        assert sdk.pipelines.pause_schedule(made.id[:7]).state == "paused"
        assert sdk.pipelines.resume_schedule(made.id).state == "active"
        assert sdk.pipelines.get_schedule(made.id[:7]).id == made.id
        sdk.pipelines.delete_schedule(made.id)
        assert sdk.pipelines.schedules() == []
        with pytest.raises(cloche.errors.InvalidInput, match="no parameter"):
            sdk.pipelines.schedule("nightly", "0 6 * * 1", {"nope": 1})
