"""Batch jobs through the SDK, in-process and over HTTP (where `cloche up` runs them)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import joblib
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import cloche
from cloche.config import Settings
from cloche.errors import Forbidden, InvalidInput, ModelNotFound
from cloche.store.store import Store
from cloche.store.tables import BatchScheduleRow, utcnow
from tests.integration.conftest import ServerFactory

FEATURES = ["tenure", "spend", "visits", "age"]


def write_inputs(folder: Path, rows_per_file: tuple[int, ...] = (120, 80)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    start = 0
    for i, n in enumerate(rows_per_file):
        X = rng.normal(size=(n, len(FEATURES)))
        table = pa.table({name: X[:, j] for j, name in enumerate(FEATURES)})
        table = table.append_column("customer", pa.array([f"c{start + k}" for k in range(n)]))
        table = table.append_column("region", pa.array(["north", "south"] * (n // 2)))
        pq.write_table(table, folder / f"part-{i}.parquet")
        start += n
    return folder


def read_predictions(folder: Path) -> pa.Table:
    files = sorted(folder.glob("predictions-*.parquet"))
    assert files, f"no predictions in {folder}"
    return pa.concat_tables(pq.read_table(f) for f in files)


@pytest.fixture
def churn(client: cloche.Client, sklearn_model_file: Path) -> Path:
    client.models.upload(sklearn_model_file, name="churn")
    return sklearn_model_file


def test_run_scores_a_folder_with_ids_passthrough_and_probabilities(
    client: cloche.Client, churn: Path, settings: Settings
) -> None:
    data = write_inputs(settings.home / "data" / "in")
    out = settings.home / "data" / "out"
    seen: list[int] = []
    job = client.batch.run(
        "churn",
        input=str(data),
        output=str(out),
        id_column="customer",
        passthrough=["region"],
        chunk_rows=50,
        workers=1,
        on_progress=lambda j: seen.append(j.progress.get("rows_done", 0)),
    )
    assert job.state == "succeeded", job.message
    assert job.progress["rows_done"] == job.progress["rows_total"] == 200
    assert seen and seen == sorted(seen)
    table = read_predictions(out)
    assert table.column("customer").to_pylist() == [f"c{i}" for i in range(200)]
    assert set(table.column_names) >= {"customer", "region", "prediction"}
    model = joblib.load(churn)
    inputs = pa.concat_tables(pq.read_table(f) for f in sorted(data.glob("*.parquet")))
    frame = inputs.select(FEATURES).to_pandas()
    assert table.column("prediction").to_pylist() == model.predict(frame).tolist()
    proba = np.column_stack([table.column(f"probability_{c}").to_numpy() for c in model.classes_])
    np.testing.assert_allclose(proba, model.predict_proba(frame), rtol=1e-9)
    assert (out / "manifest.json").is_file()
    assert [j.id for j in client.batch.list()] == [job.id]


def test_a_schema_that_does_not_match_fails_before_scoring_and_names_the_columns(
    client: cloche.Client, churn: Path, settings: Settings
) -> None:
    data = settings.home / "data" / "bad.parquet"
    data.parent.mkdir(parents=True)
    pq.write_table(pa.table({"tenure": [1.0], "spend": ["lots"], "age": [3.0]}), data)
    job = client.batch.run("churn", input=str(data), output=str(settings.home / "data" / "o"))
    assert job.state == "failed"
    assert "visits" in job.message and "spend" in job.message
    assert not list((settings.home / "data").glob("o/predictions-*"))


def test_unknown_model_is_refused_before_a_job_exists(
    client: cloche.Client, settings: Settings
) -> None:
    data = write_inputs(settings.home / "data" / "in", (10,))
    with pytest.raises(ModelNotFound):
        client.batch.run("ghost:1", input=str(data), output=str(settings.home / "o"))
    assert client.batch.list() == []


def test_api_refuses_paths_outside_the_allowed_folders(
    start_server: ServerFactory, settings: Settings, sklearn_model_file: Path, tmp_path: Path
) -> None:
    server = start_server()
    with cloche.Client(server.url) as sdk:
        sdk.models.upload(sklearn_model_file, name="churn")
        with pytest.raises(Forbidden, match="outside the folders"):
            sdk.batch.submit("churn", input="/etc/passwd", output=str(settings.home / "o"))
    reply = httpx.post(
        f"{server.url}/api/v1/batch-jobs",
        json={"model": "churn", "input": "a.parquet", "output": "o", "output_format": "xlsx"},
        headers=server.auth,
    )
    assert reply.status_code == 422
    assert "output_format" in reply.json()["error"]["message"]
    assert (
        httpx.get(f"{server.url}/api/v1/batch-jobs/bj_nope", headers=server.auth).status_code == 404
    )


def test_up_runs_a_scheduled_job_into_a_dated_folder(
    start_server: ServerFactory,
    settings: Settings,
    sklearn_model_file: Path,
    store: Store,
    request: pytest.FixtureRequest,
) -> None:
    server = start_server(scheduler={"tick_seconds": 0.2})
    sdk = cloche.Client(server.url)
    request.addfinalizer(sdk.close)
    sdk.models.upload(sklearn_model_file, name="churn")
    data = write_inputs(settings.home / "data" / "in", (30,))
    made = sdk.batch.schedule(
        "churn", cron="0 6 * * 1", input=str(data), output=str(settings.home / "weekly")
    )
    with store.transaction() as session:  # as if Monday 06:00 had just come
        row = session.get(BatchScheduleRow, made.id)
        assert row is not None
        row.next_run_at = utcnow()
    history = []
    for _ in range(150):
        history = sdk.batch.get_schedule(made.id).history
        if history and history[0].done:
            break
        time.sleep(0.2)
    assert history and history[0].state == "succeeded", history
    run_dir = Path(history[0].output)
    assert run_dir.parent == settings.home / "weekly"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{4}Z", run_dir.name)
    assert read_predictions(run_dir).num_rows == 30


def test_relative_paths_are_sent_absolute_from_the_callers_folder(
    client: cloche.Client, churn: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = settings.home / "project"
    write_inputs(project / "data", (10,))
    monkeypatch.chdir(project)
    made = client.batch.schedule("churn", cron="0 6 * * 1", input="data/*.parquet", output="out/")
    assert made.spec["input"] == str(project / "data" / "*.parquet")
    assert made.spec["output"] == str(project / "out")
    with pytest.raises(InvalidInput, match="does not exist"):
        client.batch.submit("churn", input="data/typo.parquet", output="out")
    assert client.batch.list() == []


def test_a_schedule_made_in_one_folder_runs_on_a_server_started_in_another(
    start_server: ServerFactory,
    settings: Settings,
    sklearn_model_file: Path,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    project, elsewhere = settings.home / "project", settings.home / "elsewhere"
    write_inputs(project / "data", (30,))
    write_inputs(elsewhere / "data", (6,))  # what a path taken from the server's folder reads
    monkeypatch.chdir(elsewhere)
    server = start_server(scheduler={"tick_seconds": 0.2})
    sdk = cloche.Client(server.url)
    request.addfinalizer(sdk.close)
    sdk.models.upload(sklearn_model_file, name="churn")
    monkeypatch.chdir(project)
    made = sdk.batch.schedule("churn", cron="0 6 * * 1", input="data", output="weekly")
    monkeypatch.chdir(elsewhere)
    with store.transaction() as session:  # as if Monday 06:00 had just come
        row = session.get(BatchScheduleRow, made.id)
        assert row is not None
        row.next_run_at = utcnow()
    history = []
    for _ in range(150):
        history = sdk.batch.get_schedule(made.id[:6]).history
        if history and history[0].done:
            break
        time.sleep(0.2)
    assert history and history[0].state == "succeeded", history
    run_dir = Path(history[0].output)
    assert run_dir.parent == project / "weekly"
    assert read_predictions(run_dir).num_rows == 30
