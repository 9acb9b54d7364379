"""Console batch pages on a real server: the jobs list, a job's page as it runs and ends,
starting, cancelling and resuming a job, and the schedules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from cloche.batch import schedules, service
from cloche.batch.places import Places
from cloche.batch.spec import JobSpec
from cloche.console.paging import PER_PAGE
from cloche.store.store import Store

from ._console import Browser, signed_in, signed_in_as, text_of, upload_model
from .conftest import LiveServer, ServerFactory


@pytest.fixture
def data(tmp_path: Path, sample_parquet: Path) -> Path:
    """The folder the server may use, holding 200 rows to score."""
    folder = tmp_path / "data"
    folder.mkdir()
    sample_parquet.rename(folder / "in.parquet")
    return folder


@pytest.fixture
def server(
    store: Store, start_server: ServerFactory, data: Path, sklearn_model_file: Path
) -> LiveServer:
    upload_model(store, sklearn_model_file, "churn")
    # Jobs stay queued: each test runs them itself when it needs them to end.
    return start_server(batch={"allowed_dirs": [str(data)]}, scheduler={"enabled": False})


@pytest.fixture
def admin(server: LiveServer) -> Any:
    with signed_in(server.url, server.token) as browser:
        yield browser


@pytest.fixture
def viewer(server: LiveServer, store: Store) -> Any:
    with signed_in_as(store, server.url, "viewer") as browser:
        yield browser


def queue(store: Store, data: Path, name: str = "out") -> str:
    spec = JobSpec(input=str(data / "in.parquet"), output=str(data / name))
    return service.submit(store, model_ref="churn", spec=spec).id


def test_the_list_shows_jobs_with_state_rows_and_output(
    admin: Browser, store: Store, data: Path
) -> None:
    job = queue(store, data)
    service.execute(store, job)
    waiting = queue(store, data, "later")
    page = text_of(admin.get("/console/batch").text)
    assert "2 jobs" in page
    assert f"{job} churn:1 succeeded 200 of 200 0 {data}/out" in page
    assert f"{waiting} churn:1 queued 0 0 {data}/later" in page
    only = text_of(admin.get("/console/batch?state=queued", htmx=True).text)
    assert "1 job queued" in only and waiting in only and job not in only


def test_a_job_page_polls_while_the_job_runs_and_stops_when_it_ends(
    admin: Browser, store: Store, data: Path
) -> None:
    job = queue(store, data)
    queued = admin.get(f"/console/batch/{job}", htmx=True)
    assert "<html" not in queued.text and 'hx-trigger="every 1s"' in queued.text
    assert "State: queued" in text_of(queued.text)
    service.execute(store, job)
    ended = admin.get(f"/console/batch/{job}", htmx=True)
    assert "hx-trigger" not in ended.text
    page = text_of(ended.text)
    assert "State: succeeded" in page and "200 of 200 rows" in page
    assert f"Written to {data}/out (parquet files" in page and "Rows scored 200" in page
    assert pq.read_table(next((data / "out").glob("predictions-*.parquet"))).num_rows == 200


def test_bad_rows_are_counted_on_the_job_page_with_where_they_are(
    admin: Browser, store: Store, data: Path
) -> None:
    rows = pq.read_table(data / "in.parquet").to_pylist()
    rows[3]["tenure"] = "not a number"
    (data / "bad.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    spec = JobSpec(input=str(data / "bad.jsonl"), output=str(data / "bad-out"))
    job = service.submit(store, model_ref="churn", spec=spec).id
    service.execute(store, job)
    page = text_of(admin.get(f"/console/batch/{job}").text)
    assert "partially succeeded" in page and "Bad rows 1: the rows and reasons are in" in page


def bad_rows_job(store: Store, data: Path, bad: list[int]) -> str:
    """A finished job whose input rows ``bad`` hold text where the model needs a number."""
    rows = pq.read_table(data / "in.parquet").to_pylist()
    for index in bad:
        rows[index]["tenure"] = "not a number"
    (data / "bad.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    spec = JobSpec(input=str(data / "bad.jsonl"), output=str(data / "bad-out"))
    job = service.submit(store, model_ref="churn", spec=spec).id
    service.execute(store, job)
    return job


def test_the_job_page_lists_its_bad_rows_with_row_number_and_reason_in_pages(
    admin: Browser, store: Store, data: Path
) -> None:
    bad = list(range(5, 5 + PER_PAGE + 3))
    job = bad_rows_job(store, data, bad)
    first = admin.get(f"/console/batch/{job}").text
    shown = text_of(first)
    assert f"{len(bad)} rows could not be scored" in shown and "Page 1 of 2" in shown
    assert f"<td>{bad[0]}</td>" in first and f"<td>{bad[PER_PAGE - 1]}</td>" in first
    assert f"<td>{bad[PER_PAGE]}</td>" not in first
    assert "tenure" in shown  # the reason names the column that could not be read
    second = admin.get(f"/console/batch/{job}/errors?page=2", htmx=True)
    assert second.status_code == 200 and "<html" not in second.text
    assert [f"<td>{r}</td>" in second.text for r in bad[PER_PAGE:]] == [True] * 3
    assert f"<td>{bad[0]}</td>" not in second.text
    # Without JavaScript the pager's link is the whole job page, on that page of rows.
    whole = admin.get(f"/console/batch/{job}/errors?page=2")
    assert "Batch job" in whole.text and f"<td>{bad[PER_PAGE]}</td>" in whole.text


def test_a_job_without_bad_rows_says_so_and_bad_error_pages_are_refused(
    admin: Browser, viewer: Browser, store: Store, data: Path
) -> None:
    job = queue(store, data)
    service.execute(store, job)
    assert "No bad rows." in text_of(viewer.get(f"/console/batch/{job}").text)
    refused = admin.get(f"/console/batch/{job}/errors?page=none")
    assert refused.status_code == 400 and "pages count from 1" in text_of(refused.text)
    missing = admin.get("/console/batch/nope/errors")
    assert missing.status_code == 404 and "nope" in text_of(missing.text)


def test_starting_a_job_from_the_form_queues_it_and_opens_its_page(
    admin: Browser, store: Store, data: Path
) -> None:
    form = {
        "csrf_token": admin.csrf("/console/batch"),
        "model": "churn:1",
        "input": str(data / "in.parquet"),
        "output": str(data / "from-form"),
        "input_format": "",
        "output_format": "csv",
    }
    response = admin.post("/console/batch", form, htmx=True)
    job = service.list_jobs(store)[0]
    assert response.headers["HX-Redirect"] == f"/console/batch/{job.id}"
    assert (job.state, job.spec["output_format"]) == ("queued", "csv")
    assert job.created_by.startswith("token:")
    page = text_of(admin.get(f"/console/batch/{job.id}").text)
    assert "State: queued" in page and "csv files" in page


@pytest.mark.parametrize(
    ("field", "value", "says", "status"),
    [
        ("model", "nope", "does not exist", 404),
        ("model", "bad ref!", "", 422),
        ("input", "/etc/passwd", "outside the folders this server may use", 403),
        ("output", "/tmp/elsewhere", "outside the folders this server may use", 403),
        ("input", "relative.parquet", "absolute", 422),
        ("output_format", "xlsx", "not one of parquet, jsonl, csv", 400),
    ],
)
def test_a_refused_job_shows_the_services_message_beside_its_control(
    admin: Browser, store: Store, data: Path, field: str, value: str, says: str, status: int
) -> None:
    form = {
        "csrf_token": admin.csrf("/console/batch"),
        "model": "churn",
        "input": str(data / "in.parquet"),
        "output": str(data / "out"),
        "output_format": "parquet",
        field: value,
    }
    response = admin.post("/console/batch", form, htmx=True)
    assert response.status_code == status, response.text
    assert response.headers["HX-Retarget"] == "#batch-form"
    assert says in text_of(response.text)
    shown_at = field if field in ("model", "input", "output") else "form"
    if status in (403, 404):
        assert f'id="batch-{shown_at}-error"' in response.text
    assert service.list_jobs(store) == []


def test_cancel_then_resume_a_job_from_its_page(admin: Browser, store: Store, data: Path) -> None:
    job = queue(store, data)
    form = {"csrf_token": admin.csrf(f"/console/batch/{job}")}
    cancelled = admin.post(f"/console/batch/{job}/cancel", form, htmx=True)
    assert "cancel requested" in text_of(cancelled.text)
    assert service.get_job(store, job).state == "cancelled"
    assert "Resume job" in cancelled.text and "Cancel job" not in cancelled.text
    again = admin.post(f"/console/batch/{job}/cancel", form, htmx=True)  # a stale page's form
    assert again.status_code == 409 and 'id="job-action-error"' in again.text
    assert "already ended (cancelled); there is nothing to cancel" in text_of(again.text)
    resumed = admin.post(f"/console/batch/{job}/resume", form)
    assert resumed.status_code == 303 and service.get_job(store, job).state == "queued"


def test_a_viewer_sees_no_controls_and_a_forged_post_gets_the_apis_403(
    viewer: Any, server: LiveServer, store: Store, data: Path
) -> None:
    job = queue(store, data)
    listing = viewer.get("/console/batch")
    assert listing.status_code == 200 and 'id="batch-form"' not in listing.text
    assert "Cancel job" not in viewer.get(f"/console/batch/{job}").text
    response = viewer.post(f"/console/batch/{job}/cancel", {"csrf_token": viewer.csrf()})
    api = httpx.post(
        f"{server.url}/api/v1/batch-jobs/{job}/cancel",
        headers={"Authorization": f"Bearer {viewer.token}"},
    )
    assert response.status_code == api.status_code == 403
    assert api.json()["error"]["message"] in text_of(response.text)
    form = {"csrf_token": viewer.csrf(), "model": "churn", "input": "/x", "output": "/y"}
    assert viewer.post("/console/batch", form).status_code == 403
    assert service.get_job(store, job).state == "queued" and len(service.list_jobs(store)) == 1


def test_a_forged_cancel_without_csrf_changes_nothing(
    admin: Browser, store: Store, data: Path
) -> None:
    job = queue(store, data)
    assert admin.post(f"/console/batch/{job}/cancel", {}).status_code == 403
    assert service.get_job(store, job).state == "queued"


def test_search_sort_and_pages_of_jobs(admin: Browser, store: Store, data: Path) -> None:
    ids = [queue(store, data, f"out{i:02d}") for i in range(PER_PAGE + 2)]
    first = text_of(admin.get("/console/batch").text)
    assert f"{PER_PAGE + 2} jobs" in first and "Page 1 of 2" in first
    assert ids[-1] in first and ids[0] not in first  # newest first
    oldest = text_of(admin.get("/console/batch?sort=created").text)
    assert ids[0] in oldest and ids[-1] not in oldest
    assert ids[0] in text_of(admin.get("/console/batch?page=2").text)
    found = text_of(admin.get(f"/console/batch?q={ids[7].upper()}", htmx=True).text)
    assert "1 job matching" in found and ids[7] in found


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/console/batch?state=exploded", 400, "use one of"),
        ("/console/batch?sort=evil", 400, "sort by one of"),
        ("/console/batch?page=0", 400, "pages count from 1"),
        ("/console/batch/bj_nothere", 404, "does not exist"),
    ],
)
def test_bad_batch_paths_and_queries_get_a_clear_error_page(
    admin: Browser, path: str, status: int, says: str
) -> None:
    response = admin.get(path)
    assert response.status_code == status and says in text_of(response.text)


def test_the_schedules_page_lists_schedules(
    admin: Browser, server: LiveServer, store: Store, data: Path
) -> None:
    assert "No batch schedules yet" in text_of(admin.get("/console/batch/schedules").text)
    spec = JobSpec(input=str(data / "in.parquet"), output=str(data / "daily"))
    places = Places.from_settings(server.settings)
    made = schedules.create_schedule(
        store, model_ref="churn", spec=spec, cron="0 6 * * *", places=places
    )
    page = text_of(admin.get("/console/batch/schedules").text)
    assert f"{made.id} churn 0 6 * * * enabled" in page


def test_pause_and_resume_a_schedule(
    admin: Browser, viewer: Any, server: LiveServer, store: Store, data: Path
) -> None:
    spec = JobSpec(input=str(data / "in.parquet"), output=str(data / "daily"))
    places = Places.from_settings(server.settings)
    made = schedules.create_schedule(
        store, model_ref="churn", spec=spec, cron="0 6 * * *", places=places
    )
    assert "Pause" not in viewer.get("/console/batch/schedules").text
    forged = viewer.post(f"/console/batch/schedules/{made.id}/pause", {"csrf_token": viewer.csrf()})
    assert forged.status_code == 403 and "may not deploy" in text_of(forged.text)
    form = {"csrf_token": admin.csrf("/console/batch/schedules")}
    paused = admin.post(f"/console/batch/schedules/{made.id}/pause", form, htmx=True)
    assert f"schedule {made.id} paused" in text_of(paused.text) and "paused" in paused.text
    assert schedules.get_schedule(store, made.id).enabled is False
    resumed = admin.post(f"/console/batch/schedules/{made.id}/resume", form)
    assert resumed.status_code == 303 and schedules.get_schedule(store, made.id).enabled
    missing = admin.post("/console/batch/schedules/bs_nothere/pause", form, htmx=True)
    assert missing.status_code == 404 and 'id="schedule-error"' in missing.text


def schedule_form(browser: Browser, data: Path, **changes: str) -> dict[str, str]:
    return {
        "csrf_token": browser.csrf("/console/batch/schedules"),
        "cron": "0 6 * * 1",
        "model": "churn:1",
        "input": str(data / "in.parquet"),
        "output": str(data / "weekly"),
        "input_format": "",
        "output_format": "jsonl",
        **changes,
    }


def test_a_schedule_is_created_from_the_form_as_the_api_creates_it(
    admin: Browser, store: Store, data: Path
) -> None:
    assert 'id="batch-schedule-form"' in admin.get("/console/batch/schedules").text
    response = admin.post("/console/batch/schedules", schedule_form(admin, data))
    assert response.status_code == 303
    [made] = schedules.list_schedules(store)
    assert (made.cron, made.model_ref, made.enabled) == ("0 6 * * 1", "churn:1", True)
    assert (made.spec["output"], made.spec["output_format"]) == (str(data / "weekly"), "jsonl")
    assert made.created_by.startswith("token:")
    page = text_of(admin.get("/console/batch/schedules").text)
    assert f"{made.id} churn:1 0 6 * * 1 enabled" in page
    again = admin.post("/console/batch/schedules", schedule_form(admin, data), htmx=True)
    assert again.headers["HX-Redirect"] == "/console/batch/schedules"


@pytest.mark.parametrize(
    ("field", "value", "says", "status"),
    [
        ("cron", "every monday", "is not a cron expression", 422),
        ("cron", "", "is not a cron expression", 422),
        ("model", "nope", "does not exist", 404),
        ("input", "/etc/passwd", "outside the folders this server may use", 403),
        ("output", "/tmp/elsewhere", "outside the folders this server may use", 403),
    ],
)
def test_a_refused_schedule_shows_the_message_beside_its_control_and_writes_nothing(
    admin: Browser, store: Store, data: Path, field: str, value: str, says: str, status: int
) -> None:
    response = admin.post(
        "/console/batch/schedules", schedule_form(admin, data, **{field: value}), htmx=True
    )
    assert response.status_code == status, response.text
    assert response.headers["HX-Retarget"] == "#batch-schedule-form"
    assert f'id="batch-{field}-error"' in response.text and says in text_of(response.text)
    assert 'value="0 6 * * 1"' in response.text or field == "cron"  # what was typed is kept
    whole = admin.post("/console/batch/schedules", schedule_form(admin, data, **{field: value}))
    assert whole.status_code == status and "Schedule a batch job" in whole.text
    assert schedules.list_schedules(store) == []


def test_a_viewer_gets_no_schedule_form_and_a_forged_one_gets_the_apis_403(
    admin: Browser, viewer: Browser, server: LiveServer, store: Store, data: Path
) -> None:
    assert 'id="batch-schedule-form"' not in viewer.get("/console/batch/schedules").text
    response = viewer.post("/console/batch/schedules", schedule_form(viewer, data))
    body = {k: v for k, v in schedule_form(viewer, data).items() if v and k != "csrf_token"}
    api = httpx.post(
        f"{server.url}/api/v1/batch-schedules",
        json={**body, "model": body["model"]},
        headers={"Authorization": f"Bearer {viewer.token}"},
    )
    assert response.status_code == api.status_code == 403
    assert api.json()["error"]["message"] in text_of(response.text)
    forged = {**schedule_form(admin, data), "csrf_token": "forged"}
    assert admin.post("/console/batch/schedules", forged).status_code == 403
    assert schedules.list_schedules(store) == []


def test_the_api_lists_a_jobs_bad_rows_in_pages(
    server: LiveServer, store: Store, data: Path
) -> None:
    bad = [3, 7, 11]
    job = bad_rows_job(store, data, bad)
    url = f"{server.url}/api/v1/batch-jobs/{job}/errors"
    first = httpx.get(url, params={"limit": 2}, headers=server.auth, timeout=30)
    assert first.status_code == 200 and first.headers["X-Total-Count"] == "3"
    assert [r["row"] for r in first.json()] == bad[:2]
    assert "tenure" in first.json()[0]["message"]
    rest = httpx.get(url, params={"limit": 2, "offset": 2}, headers=server.auth, timeout=30)
    assert [r["row"] for r in rest.json()] == bad[2:]
    missing = httpx.get(f"{server.url}/api/v1/batch-jobs/nope/errors", headers=server.auth)
    assert missing.status_code == 404 and "nope" in missing.json()["error"]["message"]
