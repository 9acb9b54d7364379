"""Console pipeline pages on a real server (its scheduler off: a queued run stays queued until a
test runs it): the pipelines list, a pipeline's run form, schedules, the runs list, a run's
page with its approval, cancel and retry, a step's attempts, and the lineage page."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloche import audit
from cloche.console.paging import PER_PAGE
from cloche.pipelines import lifecycle, records, registered, schedules
from cloche.pipelines.entities import PipelineRun
from cloche.pipelines.loading import load_pipeline
from cloche.pipelines.server_runs import run_queued
from cloche.store.store import Store

from ._console import Browser, signed_in, signed_in_as, text_of, upload_model
from .conftest import LiveServer, ServerFactory

SOURCE = """
from cloche.pipelines import If, component, pipeline
from cloche.pipelines.components import approval


@component
def count(n: int, label: str) -> int:
    print(f"counting {label}")
    return n


@pipeline(name="gated")
def gated(n: int, label: str = "rows", fast: bool = False) -> None:
    decision = approval(message="count the rows?", timeout_seconds=60)
    with If(decision.outputs["approved"] == True):  # noqa: E712
        count(n=n, label=label)
"""


@pytest.fixture
def server(start_server: ServerFactory) -> LiveServer:
    return start_server(scheduler={"enabled": False})


@pytest.fixture
def gated(store: Store, tmp_path: Path) -> str:
    path = tmp_path / "gated.py"
    path.write_text(SOURCE)
    pipe = load_pipeline(str(path))
    registered.register(store, pipe, source=SOURCE, file_name="gated.py", actor="alice")
    return "gated"


@pytest.fixture
def admin(server: LiveServer) -> Any:
    with signed_in(server.url, server.token) as browser:
        yield browser


@pytest.fixture
def viewer(server: LiveServer, store: Store) -> Any:
    with signed_in_as(store, server.url, "viewer") as browser:
        yield browser


def queue(store: Store, n: int = 3) -> PipelineRun:
    return registered.queue_run(store, "gated", {"n": n}, actor="alice")


def wait_for(store: Store, run_id: str, state: str) -> None:
    deadline = time.monotonic() + 60
    while records.get_run(store, run_id).state != state:
        assert time.monotonic() < deadline, records.get_run(store, run_id)
        time.sleep(0.05)


def test_the_pipelines_page_lists_registered_pipelines_with_their_parameters(
    admin: Browser, gated: str
) -> None:
    page = text_of(admin.get("/console/pipelines").text)
    assert "1 pipeline" in page
    assert "gated 1 2 n: int label: str fast: bool gated.py" in page
    found = admin.get("/console/pipelines?q=GAT", htmx=True)
    assert found.text.lstrip().startswith('<section id="pipelines-table"')
    assert "No pipelines match" in text_of(admin.get("/console/pipelines?q=zzz").text)


def test_a_pipeline_page_draws_its_graph_and_a_form_from_its_parameters(
    admin: Browser, gated: str
) -> None:
    page = admin.get("/console/pipelines/gated").text
    assert '<title id="graph-title">Steps of pipeline gated' in page
    assert 'data-step="approval"' in page and 'data-step="count"' in page
    assert '<input id="param-n" name="param-n" value=""' in page
    assert '<input id="param-label" name="param-label" value="rows"' in page
    assert '<select id="param-fast" name="param-fast"' in page
    assert "n (int, required)" in text_of(page)


def test_starting_a_run_queues_it_with_typed_parameters(
    admin: Browser, store: Store, gated: str
) -> None:
    form = {"csrf_token": admin.csrf(), "param-n": "7", "param-label": "", "param-fast": "true"}
    response = admin.post("/console/pipelines/gated/runs", form)
    [run] = records.list_runs(store)
    assert response.status_code == 303 and response.headers["location"] == f"/console/runs/{run.id}"
    assert (run.state, run.params, run.created_by) == (
        "queued", {"n": 7, "label": "rows", "fast": True}, run.created_by
    )  # fmt: skip
    assert run.created_by.startswith("token:")
    again = admin.post("/console/pipelines/gated/runs", form, htmx=True)
    assert again.headers["HX-Redirect"].startswith("/console/runs/pr_")
    recent = text_of(admin.get("/console/pipelines/gated/runs", htmx=True).text)
    assert recent.count("queued") == 2 and "All runs of gated" in recent


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"param-n": "three"}, "param-n", "parameter 'n' takes a int, not 'three'"),
        ({"param-n": ""}, "param-n", "needs the parameter 'n' (int)"),
        ({"param-n": "1", "param-fast": "maybe"}, "param-fast", "parameter 'fast' takes a bool"),
    ],
)
def test_a_bad_parameter_is_refused_with_the_message_beside_its_field(
    admin: Browser, store: Store, gated: str, fields: dict[str, str], field: str, says: str
) -> None:
    form = {"csrf_token": admin.csrf(), **fields}
    response = admin.post("/console/pipelines/gated/runs", form, htmx=True)
    assert response.status_code == 422 and response.headers["HX-Retarget"] == "#run-form"
    assert f'id="{field}" name="{field}"' in response.text
    control = response.text.split(f'id="{field}"')[1].split(">")[0]
    assert 'aria-invalid="true"' in control and says in text_of(response.text)
    assert records.list_runs(store) == []
    full = admin.post("/console/pipelines/gated/runs", form)
    assert full.status_code == 422 and "<html" in full.text and says in text_of(full.text)


def test_a_waiting_step_is_approved_on_the_run_page_which_shows_who_decided(
    admin: Browser, store: Store, gated: str
) -> None:
    run = queue(store)
    results: list[PipelineRun] = []
    runner = threading.Thread(target=lambda: results.append(run_queued(store, run.id)))
    runner.start()
    try:
        wait_for(store, run.id, "waiting")
        page = admin.get(f"/console/runs/{run.id}")
        shown = text_of(page.text)
        assert "State waiting for approval" in shown and "count the rows?" in shown
        assert 'hx-trigger="every 2s"' in page.text  # refreshed while it runs
        assert 'data-step="approval" data-state="waiting"' in page.text
        waiting = text_of(admin.get("/console/runs?state=waiting").text)
        assert "1 run waiting for approval" in waiting and run.id in waiting
        overview = admin.get("/console/overview/approvals", htmx=True).text
        assert f'href="/console/runs/{run.id}"' in overview  # the overview links to the run
        form = {"csrf_token": admin.csrf(), "decision": "approve", "comment": "go"}
        decided = admin.post(f"/console/runs/{run.id}/steps/approval/decision", form, htmx=True)
        assert decided.status_code == 200 and "Step approval approved." in text_of(decided.text)
    finally:
        runner.join(60)
    assert results[0].state == "succeeded"
    done = admin.get(f"/console/runs/{run.id}", htmx=True)
    shown = text_of(done.text)
    assert done.text.lstrip().startswith('<div id="run-main">')  # polling stopped: no trigger
    assert "State succeeded" in shown and "approved by token:" in shown and "“go”" in shown
    assert 'data-step="count" data-state="succeeded"' in done.text
    assert "count: succeeded" in done.text  # the graph's description says each state
    entry = audit.list_audit(store, resource=f"{run.id}/approval")[0]
    assert entry.action == "pipeline.approve" and entry.actor.startswith("token:")
    step = text_of(admin.get(f"/console/runs/{run.id}/steps/count").text)
    assert "Attempt 1: succeeded" in step and "counting rows" in step and "output=3" in step


def test_a_decision_on_a_step_not_waiting_shows_the_service_message_beside_it(
    admin: Browser, store: Store, gated: str
) -> None:
    run = queue(store)
    form = {"csrf_token": admin.csrf(), "decision": "approve"}
    response = admin.post(f"/console/runs/{run.id}/steps/approval/decision", form, htmx=True)
    assert response.status_code == 409 and 'id="decision-error"' in response.text
    assert "is not an approval waiting for a decision" in text_of(response.text)
    path = f"/console/runs/{run.id}/steps/approval/decision"
    neither = admin.post(path, {**form, "decision": "x"})
    assert neither.status_code == 400 and "choose approve or reject" in text_of(neither.text)


def test_a_run_is_cancelled_and_retried_from_its_page(
    admin: Browser, store: Store, gated: str
) -> None:
    run = queue(store)
    form = {"csrf_token": admin.csrf()}
    cancelled = admin.post(f"/console/runs/{run.id}/cancel", form, htmx=True)
    assert "State cancelled" in text_of(cancelled.text) and "Retry run" in cancelled.text
    assert records.get_run(store, run.id).state == "cancelled"
    again = admin.post(f"/console/runs/{run.id}/cancel", form, htmx=True)
    assert again.status_code == 409 and 'id="action-error"' in again.text
    assert "already ended (cancelled)" in text_of(again.text)
    retried = admin.post(f"/console/runs/{run.id}/retry", form)
    assert retried.status_code == 303 and records.get_run(store, run.id).state == "queued"
    assert admin.post(f"/console/runs/{run.id}/explode", form).status_code == 400


def test_the_runs_list_filters_by_state_searches_and_pages(
    admin: Browser, store: Store, gated: str
) -> None:
    runs = [queue(store, n) for n in range(PER_PAGE + 3)]
    lifecycle.cancel_run(store, runs[0].id, actor="bob")
    first = text_of(admin.get("/console/runs").text)
    assert f"{PER_PAGE + 3} runs" in first and "Page 1 of 2" in first
    assert runs[-1].id in first and runs[0].id not in first  # newest first
    cancelled = admin.get("/console/runs?state=cancelled", htmx=True)
    assert cancelled.text.lstrip().startswith('<section id="runs-table"')
    assert "1 run cancelled" in text_of(cancelled.text) and runs[0].id in cancelled.text
    by_id = text_of(admin.get(f"/console/runs?q={runs[5].id}").text)
    assert "1 run matching" in by_id and runs[5].id in by_id
    assert "0 runs of other" in text_of(admin.get("/console/runs?pipeline=other").text)


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/console/runs?state=sleeping", 400, "one of: queued, pending"),
        ("/console/runs?sort=evil", 400, "sort by one of"),
        ("/console/runs?page=0", 400, "pages count from 1"),
        ("/console/runs?pipeline=../x", 422, ""),
        ("/console/runs/pr_nope", 404, "no pipeline run 'pr_nope'"),
        ("/console/runs/pr_nope/steps/x", 404, "no pipeline run"),
        ("/console/pipelines/nope", 404, "no registered pipeline 'nope'"),
        ("/console/pipelines?sort=evil", 400, "sort by one of"),
        ("/console/lineage?ref=" + "x" * 301, 400, "longer than 300"),
        ("/console/lineage?ref=nothing:9", 404, ""),
    ],
)
def test_bad_paths_and_queries_get_a_clear_error_page(
    admin: Browser, gated: str, path: str, status: int, says: str
) -> None:
    response = admin.get(path)
    assert response.status_code == status and says in text_of(response.text)


def register_copy(store: Store, name: str, source_hash: str) -> None:
    """Another version (or pipeline) with gated's graph: a new hash is a new version."""
    graph = registered.newest_graph(store, "gated")
    copy = graph.model_copy(update={"name": name, "source_hash": source_hash})
    registered.register_graph(store, copy, source=SOURCE, file_name=f"{name}.py", actor="bob")


def test_the_pipelines_list_is_paged_searched_and_sorted_in_sql(
    admin: Browser, store: Store, gated: str
) -> None:
    for i in range(PER_PAGE + 4):
        register_copy(store, f"p{i:02d}", f"hash-{i}")
    register_copy(store, "p00", "hash-again")  # a second version: still one row
    first = text_of(admin.get("/console/pipelines").text)
    assert f"{PER_PAGE + 5} pipelines" in first and "Page 1 of 2" in first
    assert "gated 1" in first and "p00 2" in first
    last = text_of(admin.get("/console/pipelines?sort=-name&page=2", htmx=True).text)
    assert "p03" in last and "p04" not in last and "gated" in last
    found = text_of(admin.get("/console/pipelines?q=P2", htmx=True).text)
    assert "9 pipelines matching “P2”" in found and "p20" in found and "p19" not in found
    newest = text_of(admin.get("/console/pipelines?sort=-updated", htmx=True).text)
    assert newest.index("p00") < newest.index("p28") and "gated" not in newest  # oldest: page 2


def test_a_pipelines_older_versions_are_a_page_of_their_own(
    admin: Browser, store: Store, gated: str
) -> None:
    for i in range(PER_PAGE + 1):
        register_copy(store, "gated", f"hash-{i}")
    assert "/console/pipelines/gated/versions" in admin.get("/console/pipelines/gated").text
    first = admin.get("/console/pipelines/gated/versions")
    shown = text_of(first.text)
    assert f"{PER_PAGE + 2} versions registered" in shown and "Page 1 of 2" in shown
    assert shown.index(f"{PER_PAGE + 2} 2 n: int") < shown.index(f"{PER_PAGE + 1} 2 n: int")
    oldest = text_of(admin.get("/console/pipelines/gated/versions?sort=version").text)
    assert "1 2 n: int label: str fast: bool gated.py" in oldest and "alice" in oldest
    second = admin.get("/console/pipelines/gated/versions?page=2", htmx=True)
    assert second.text.lstrip().startswith('<section id="pipeline-versions"')
    assert "gated.py" in second.text and "Page 2 of 2" in text_of(second.text)


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/console/pipelines/nothing/versions", 404, "no registered pipeline 'nothing'"),
        ("/console/pipelines/gated/versions?sort=steps", 400, "cannot sort by 'steps'"),
        ("/console/pipelines/gated/versions?page=0", 400, "pages count from 1"),
        ("/console/pipelines?sort=steps", 400, "cannot sort by 'steps'"),
    ],
)
def test_bad_version_and_pipeline_queries_get_a_clear_error(
    admin: Browser, gated: str, path: str, status: int, says: str
) -> None:
    response = admin.get(path)
    assert response.status_code == status and says in text_of(response.text)


def test_a_step_page_names_an_unknown_step(admin: Browser, store: Store, gated: str) -> None:
    run = queue(store)
    response = admin.get(f"/console/runs/{run.id}/steps/nowhere")
    assert response.status_code == 404 and "has no step 'nowhere'" in text_of(response.text)


def test_schedules_are_listed_paused_resumed_and_deleted(
    admin: Browser, store: Store, gated: str
) -> None:
    made = schedules.create_schedule(store, "gated", cron="0 6 * * 1", params={"n": 2}, actor="a")
    shown = text_of(admin.get("/console/pipelines/gated/schedules", htmx=True).text)
    assert f"{made.id} 0 6 * * 1 active" in shown and "n=2" in shown
    base = f"/console/pipelines/gated/schedules/{made.id}"
    form = {"csrf_token": admin.csrf()}
    paused = admin.post(f"{base}/pause", form, htmx=True)
    assert "paused" in text_of(paused.text) and "Resume" in paused.text
    assert schedules.get_schedule(store, made.id).enabled is False
    assert admin.post(f"{base}/resume", form).status_code == 303
    assert schedules.get_schedule(store, made.id).enabled is True
    deleted = admin.post(f"{base}/delete", form, htmx=True)
    assert f"Schedule {made.id} deleted." in text_of(deleted.text)
    assert "No schedules" in deleted.text
    missing = admin.post(f"{base}/pause", form, htmx=True)
    assert missing.status_code == 404 and made.id in text_of(missing.text)
    assert admin.post(f"{base}/explode", form).status_code == 400


def test_a_schedule_is_created_from_the_form(admin: Browser, store: Store, gated: str) -> None:
    form = {"csrf_token": admin.csrf(), "cron": "0 6 * * 1", "params": '{"n": 4}', "max_runs": ""}
    made = admin.post("/console/pipelines/gated/schedules", form, htmx=True)
    [schedule] = schedules.list_schedules(store, pipeline="gated")
    assert made.status_code == 200 and f"Schedule {schedule.id} created." in text_of(made.text)
    assert (schedule.cron, schedule.params, schedule.max_runs) == ("0 6 * * 1", {"n": 4}, None)
    assert schedule.created_by.startswith("token:")


def test_a_schedule_takes_start_end_concurrency_and_catch_up_as_the_cli_does(
    admin: Browser, store: Store, gated: str
) -> None:
    form = {
        "csrf_token": admin.csrf(),
        "cron": "0 6 * * *",
        "params": '{"n": 4}',
        "start": "2090-01-01T00:00",
        "end": "2090-02-01T00:00+00:00",
        "max_concurrent": "2",
        "catch_up": "yes",
    }
    response = admin.post("/console/pipelines/gated/schedules", form)
    assert response.status_code == 303
    [made] = schedules.list_schedules(store, pipeline="gated")
    assert (made.max_concurrent, made.catch_up) == (2, True)
    assert made.start_at == datetime(2090, 1, 1, tzinfo=UTC)
    assert made.end_at == datetime(2090, 2, 1, tzinfo=UTC)
    assert made.next_run_at == datetime(2090, 1, 1, 6, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "field", "status", "says"),
    [
        ({"start": "tomorrow"}, "schedule-start", 400, "--start 'tomorrow' is not a time"),
        ({"end": "2001-01-01T00:00"}, "schedule-end", 422, "has already passed"),
        (
            {"start": "2090-02-01T00:00", "end": "2090-01-01T00:00"},
            "schedule-start",
            422,
            "--start must be before --end",
        ),
        ({"max_concurrent": "0"}, "schedule-max-concurrent", 422, "must be from 1"),
        ({"max_concurrent": "two"}, "schedule-max-concurrent", 400, "'two' is not a whole"),
        ({"cron": "every day"}, "schedule-cron", 422, "'every day' is not a cron expression"),
        ({"params": "[1]"}, "schedule-params", 400, "the parameters are not a JSON object"),
        ({"params": '{"m": 1}'}, "schedule-params", 422, "has no parameter 'm'"),
        ({"params": "{}"}, "schedule-params", 422, "needs the parameter 'n'"),
        ({"max_runs": "0"}, "schedule-max-runs", 422, "--max-runs must be from 1"),
        ({"max_runs": "x"}, "schedule-max-runs", 400, "'x' is not a whole number"),
    ],
)
def test_a_bad_schedule_is_refused_beside_its_field_and_keeps_what_was_typed(
    admin: Browser,
    store: Store,
    gated: str,
    fields: dict[str, str],
    field: str,
    status: int,
    says: str,
) -> None:
    form = {"csrf_token": admin.csrf(), "cron": "0 6 * * 1", "params": '{"n": 1}', **fields}
    response = admin.post("/console/pipelines/gated/schedules", form, htmx=True)
    assert response.status_code == status and says in text_of(response.text)
    control = response.text.split(f'id="{field}"')[1].split(">")[0]
    assert 'aria-invalid="true"' in control
    assert f'id="schedule-cron" name="cron" value="{form["cron"]}"' in response.text
    assert schedules.list_schedules(store) == []


def test_the_lineage_page_shows_any_reference_both_ways(
    admin: Browser, store: Store, sklearn_model_file: Path
) -> None:
    upload_model(store, sklearn_model_file, "churn", aliases=["prod"])
    assert "Enter a reference" in text_of(admin.get("/console/lineage").text)
    page = text_of(admin.get("/console/lineage?ref=churn@prod").text)
    assert "model version churn:1 (churn@prod)" in page
    assert "churn:1 was not made or changed by a pipeline run" in page
    assert "alias churn@prod (alias)" in page
    fragment = admin.get("/console/lineage?ref=churn:1", htmx=True)
    assert fragment.text.lstrip().startswith('<section id="lineage-result"')


def test_a_viewer_sees_no_controls_and_a_forged_post_gets_the_apis_403(
    viewer: Any, server: LiveServer, store: Store, gated: str
) -> None:
    run = queue(store)
    made = schedules.create_schedule(store, "gated", cron="0 6 * * 1", params={"n": 2}, actor="a")
    pipeline_page = viewer.get("/console/pipelines/gated").text
    assert 'id="run-form"' not in pipeline_page
    schedules_part = viewer.get("/console/pipelines/gated/schedules").text
    assert "Pause" not in schedules_part and 'id="schedule-form"' not in schedules_part
    assert "Cancel run" not in viewer.get(f"/console/runs/{run.id}").text
    api = httpx.post(
        f"{server.url}/api/v1/pipelines/runs/{run.id}/cancel",
        headers={"Authorization": f"Bearer {viewer.token}"},
    )
    assert api.status_code == 403
    csrf = viewer.csrf()
    posts = [
        ("/console/pipelines/gated/runs", {"param-n": "1"}),
        (f"/console/runs/{run.id}/cancel", {}),
        (f"/console/runs/{run.id}/steps/approval/decision", {"decision": "approve"}),
        (f"/console/pipelines/gated/schedules/{made.id}/pause", {}),
        ("/console/pipelines/gated/schedules", {"cron": "0 6 * * 1", "params": '{"n": 1}'}),
    ]
    for path, fields in posts:
        response = viewer.post(path, {"csrf_token": csrf, **fields})
        assert response.status_code == 403, path
        assert api.json()["error"]["message"] in text_of(response.text), path
    assert [r.id for r in records.list_runs(store)] == [run.id]
    assert records.get_run(store, run.id).state == "queued"
    assert schedules.get_schedule(store, made.id).enabled is True
    assert len(schedules.list_schedules(store)) == 1


def test_a_post_without_the_csrf_token_is_forbidden_and_queues_nothing(
    admin: Browser, store: Store, gated: str
) -> None:
    response = admin.post("/console/pipelines/gated/runs", {"param-n": "1"})
    assert response.status_code == 403 and records.list_runs(store) == []
