"""Batch jobs and schedules sent over REST read and write only where the server's settings allow:
each forbidden form of a path is a 403 naming the setting, and a job whose pattern comes to
match a link pointing out is refused when it runs, before any file is read.

No object-store server is started: moto is not in requirements/test.txt, so an allowed S3 prefix
is shown accepted at submission (the job is only queued) and the URL rules are unit-tested in
tests/unit/batch/test_places.py."""

from __future__ import annotations

from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cloche.auth.roles import LOCAL_USER
from cloche.batch import service
from cloche.batch.places import Places
from cloche.config import Settings
from cloche.errors import DestinationRefused
from cloche.registry.inspection import inspect_here
from cloche.registry.upload import upload_model
from cloche.store.store import Store
from tests.integration.conftest import LiveServer, ServerFactory

FEATURES = ["tenure", "spend", "visits", "age"]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """The allowed folder: a good input, and a link inside it to a file outside."""
    folder = tmp_path / "data"
    (folder / "in").mkdir(parents=True)
    table = pa.table({name: [0.1 * i for i in range(10)] for name in FEATURES})
    pq.write_table(table, folder / "in" / "part-0.parquet")
    pq.write_table(table, tmp_path / "secret.parquet")
    (folder / "leak.parquet").symlink_to(tmp_path / "secret.parquet")
    return folder


@pytest.fixture
def server(
    store: Store, start_server: ServerFactory, data: Path, sklearn_model_file: Path
) -> LiveServer:
    upload_model(
        store, principal=LOCAL_USER, inspector=inspect_here, source=sklearn_model_file, name="churn"
    )
    return start_server(
        batch={"allowed_dirs": [str(data)], "allowed_urls": ["s3://bucket-a/prefix"]},
        scheduler={"enabled": False},  # the jobs stay queued: this test runs them itself
    )


FORBIDDEN = {
    "absolute-outside": "/etc/passwd",
    "dot-dot": "{data}/in/../../secret.parquet",
    "link-out": "{data}/leak.parquet",
    "glob-matching-link": "{data}/*.parquet",
    "file-url": "file://{data}/in/part-0.parquet",
    "memory-url": "memory://bucket-a/prefix/x.parquet",
    "chained": "simplecache::s3://bucket-a/prefix/x.parquet",
    "unlisted-bucket": "s3://bucket-b/prefix/x.parquet",
}


def post(server: LiveServer, path: str, **body: object) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/v1/{path}", json={"model": "churn", **body}, headers=server.auth
    )


@pytest.mark.parametrize("given", FORBIDDEN.values(), ids=list(FORBIDDEN))
@pytest.mark.parametrize("resource", ["batch-jobs", "batch-schedules"])
def test_a_forbidden_input_is_403_naming_the_setting(
    server: LiveServer, store: Store, data: Path, given: str, resource: str
) -> None:
    extra = {"cron": "0 6 * * 1"} if resource == "batch-schedules" else {}
    answer = post(
        server, resource, input=given.format(data=data), output=str(data / "out"), **extra
    )
    assert answer.status_code == 403, answer.text
    error = answer.json()["error"]
    assert error["code"] == "destination_refused"
    assert "CLOCHE_BATCH__ALLOWED_" in error["hint"]
    assert service.list_jobs(store) == []


@pytest.mark.parametrize(
    ("input", "output"), [("data/in", "{data}/out"), ("{data}/in", "out"), ("in", "out/")]
)
@pytest.mark.parametrize("resource", ["batch-jobs", "batch-schedules"])
def test_a_relative_path_is_422_saying_paths_must_be_absolute(
    server: LiveServer, store: Store, data: Path, input: str, output: str, resource: str
) -> None:
    extra = {"cron": "0 6 * * 1"} if resource == "batch-schedules" else {}
    answer = post(
        server, resource, input=input.format(data=data), output=output.format(data=data), **extra
    )
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_input"
    assert "paths must be absolute on the server" in error["message"]
    assert "give absolute paths" in error["hint"]
    assert service.list_jobs(store) == []
    assert httpx.get(f"{server.url}/api/v1/batch-schedules", headers=server.auth).json() == []


@pytest.mark.parametrize("output", ["/tmp/elsewhere", "{data}/../out", "s3://bucket-a/prefix"])
def test_a_forbidden_output_is_403(server: LiveServer, data: Path, output: str) -> None:
    answer = post(server, "batch-jobs", input=str(data / "in"), output=output.format(data=data))
    assert answer.status_code == 403, answer.text
    assert "folders this server may use" in answer.json()["error"]["message"]


def test_the_ray_address_is_not_a_request_field(server: LiveServer, data: Path) -> None:
    answer = post(
        server,
        "batch-jobs",
        input=str(data / "in"),
        output=str(data / "out"),
        ray_address="ray://attacker:10001",
    )
    assert answer.status_code == 201, answer.text
    assert "ray_address" not in answer.json()["spec"]


def test_allowed_places_are_queued_and_run(
    server: LiveServer, store: Store, settings: Settings, data: Path
) -> None:
    listed = post(
        server, "batch-jobs", input="s3://bucket-a/prefix/day=1/*.parquet", output=str(data / "s3")
    )
    assert listed.status_code == 201, listed.text
    answer = post(server, "batch-jobs", input=str(data / "in/*.parquet"), output=str(data / "o"))
    assert answer.status_code == 201, answer.text
    places = Places.from_settings(server.settings)
    job = service.execute(store, answer.json()["id"], places=places)  # as the runner does
    assert job.state == "succeeded", job.message


def test_a_link_that_a_pattern_matches_by_run_time_is_refused_when_the_job_runs(
    server: LiveServer, store: Store, data: Path, tmp_path: Path
) -> None:
    answer = post(server, "batch-jobs", input=str(data / "in/*.parquet"), output=str(data / "o"))
    assert answer.status_code == 201, answer.text
    (data / "in" / "zz.parquet").symlink_to(tmp_path / "secret.parquet")  # after the check
    with pytest.raises(DestinationRefused, match=r"zz\.parquet"):
        service.execute(store, answer.json()["id"], places=Places.from_settings(server.settings))
    failed = service.get_job(store, answer.json()["id"])
    assert failed.state == "failed" and "outside the folders" in failed.message
    assert not (data / "o" / "predictions-00000.parquet").exists()
