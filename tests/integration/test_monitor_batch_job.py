"""`monitors run --batch-job`: real batch jobs, scored by the batch service with a trained
scikit-learn model, compared with the version's baseline under a monitor's configuration."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import cloche
from cloche.auth.roles import LOCAL_USER
from cloche.batch import service as batch
from cloche.batch.spec import JobSpec
from cloche.config import Settings
from cloche.endpoints import service as endpoints
from cloche.errors import BatchJobNotFound, InvalidInput, JobStateConflict
from cloche.logs.service import log_root
from cloche.monitoring import runs, service
from cloche.monitoring.entities import MonitorConfig
from cloche.registry.inspection import inspect_here
from cloche.registry.upload import upload_model
from cloche.serving.payload_log import PayloadLog, encode_row
from cloche.store.store import Store
from cloche.store.tables import BatchJobRow
from tests.integration._receivers import Webhook, webhook_receiver

FEATURES = ["tenure", "spend", "visits", "age"]
ROWS = 2_000


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The shared fixture's, with the loopback webhook receiver allowed."""
    return Settings(home=tmp_path / "home", egress={"allow": ["127.0.0.1"]})


@pytest.fixture
def hook() -> Iterator[Webhook]:
    with webhook_receiver() as receiver:
        yield receiver


@pytest.fixture
def data(settings: Settings) -> Path:
    """Under CLOCHE_HOME, where a server lets API callers' batch jobs read and write."""
    folder = settings.home / "data"
    folder.mkdir(parents=True)
    return folder


def _frame(seed: int, shift: dict[str, float] | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(ROWS, len(FEATURES))), columns=FEATURES)
    for name, delta in (shift or {}).items():
        frame[name] += delta
    return frame


@pytest.fixture
def churn(settings: Settings, sklearn_model_file: Path, data: Path) -> Iterator[Store]:
    """churn:1, whose baseline holds N(0, 1) features and the model's predictions on them;
    an endpoint for the monitor to belong to."""
    baseline = _frame(0)
    baseline["prediction"] = joblib.load(sklearn_model_file).predict(baseline[FEATURES])
    path = data / "baseline.parquet"
    pq.write_table(pa.Table.from_pandas(baseline, preserve_index=False), path)
    store = Store.open(settings)
    upload_model(
        store,
        principal=LOCAL_USER,
        inspector=inspect_here,
        source=sklearn_model_file,
        name="churn",
        baseline=path,
    )
    endpoints.create_endpoint(store, name="churn")
    yield store
    store.close()


def _job(store: Store, data: Path, name: str, frame: pd.DataFrame, ref: str = "churn:1") -> str:
    """Score ``frame`` (written as Parquet) with a real batch job in this process."""
    source = data / f"{name}.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), source, row_group_size=500)
    spec = JobSpec(input=str(source), output=str(data / f"{name}-out"), workers=1, chunk_rows=700)
    job = batch.run(store, model_ref=ref, spec=spec)
    assert job.state == "succeeded", job.message
    return job.id


def test_a_shifted_feature_breaches_skew_alone_and_alerts_once(
    churn: Store, data: Path, settings: Settings, hook: Webhook
) -> None:
    # The model ignores `age` (the labels never used it): shifting it moves no prediction.
    job = _job(churn, data, "shifted", _frame(1, {"age": 2.0}))
    service.create_monitor(
        churn,
        endpoint="churn",
        config=MonitorConfig(alerts=[f"webhook:{hook.url}"]),
        egress=settings.egress.policy(),
    )
    run = runs.run_monitor(churn, "churn", settings=settings, batch_job=job)

    assert run.status == "breached", run.message
    assert run.rows == ROWS
    assert run.breaches == ["batch:skew:age"]
    results = run.results
    assert results["batch_job"] == job and results["model"] == "churn:1"
    assert results["source"]["rows_scored"] == ROWS and results["source"]["output_files"] == 3
    skew = {name: f["skew"] for name, f in results["features"].items()}
    assert skew["age"]["breached"] and skew["age"]["value"] > 0.3
    assert (skew["age"]["metric"], skew["age"]["log_base"], skew["age"]["threshold"]) == (
        "js",
        2,
        0.3,
    )
    assert len(skew["age"]["bin_edges"]) == 9  # the baseline's deciles, as for an endpoint
    assert not any(skew[f]["breached"] for f in ("tenure", "spend", "visits"))
    quality = results["features"]["age"]["quality"]
    assert quality["missing_rate"]["value"] == 0 and quality["out_of_range_rate"]["value"] > 0
    assert "drift" not in results["features"]["age"]
    assert "no previous window" in results["not_applicable"]["drift"]
    predictions = results["predictions"]
    assert predictions["kind"] == "categorical" and predictions["count"] == ROWS
    assert predictions["skew"]["metric"] == "linf" and not predictions["skew"]["breached"]

    assert len(hook.bodies) == 1  # one digest
    text = hook.bodies[0]["text"]
    assert "batch job " + job in text and "batch:skew:age" in text and "threshold 0.3" in text
    alerts = service.list_alerts(churn, state="open")
    assert [a.key for a in alerts] == ["batch:skew:age"]
    assert [r.id for r in service.list_runs(churn, "churn")] == [run.id]  # `monitors show`
    finished = batch.get_job(churn, job).finished_at
    assert run.window_end == finished and run.started_at > finished  # the job's span, run now

    again = runs.run_monitor(churn, "churn", settings=settings, batch_job=job[:8])
    assert again.status == "breached" and again.results["alerts"]["deliveries"] == []
    assert len(hook.bodies) == 1  # deduplicated inside the cooldown

    clean = _job(churn, data, "clean", _frame(2))
    resolved = runs.run_monitor(churn, "churn", settings=settings, batch_job=clean)
    assert resolved.status == "ok" and resolved.breaches == []
    assert resolved.results["alerts"]["resolved"] == ["batch:skew:age"]
    assert len(hook.bodies) == 2 and "resolved" in hook.bodies[1]["text"]


def test_predictions_that_move_breach_against_the_baselines_predictions(
    churn: Store, data: Path, settings: Settings
) -> None:
    # The labels follow tenure + spend / 2: shifting spend moves the predicted classes.
    job = _job(
        churn, data, "spend", _frame(3, {"spend": 2.5})
    )  # far past 0.3: sketches are randomised
    # A per-feature threshold named "prediction" applies to the predictions.
    config = MonitorConfig(feature_thresholds={"prediction": 0.1})
    service.create_monitor(churn, endpoint="churn", config=config)
    run = runs.run_monitor(churn, "churn", settings=settings, batch_job=job)

    # (Shifted this far, spend also leaves the baseline's range: a quality breach beside these.)
    assert {"batch:skew:spend", "batch:predictions:skew"} <= set(run.breaches), run.message
    skew = run.results["predictions"]["skew"]
    assert skew["breached"] and skew["value"] > 0.1 and skew["threshold"] == 0.1
    alert = next(a for a in service.list_alerts(churn) if a.key == "batch:predictions:skew")
    assert alert.value == pytest.approx(skew["value"]) and alert.threshold == 0.1


def test_endpoint_runs_and_batch_runs_keep_their_own_alerts(
    churn: Store, data: Path, settings: Settings
) -> None:
    """A clean hour of traffic does not resolve a batch job's alert, nor the reverse, and
    M-of-N counts the runs of its own kind only."""
    endpoints.deploy(churn, endpoint="churn", ref="churn:1")
    now = datetime.now(UTC)
    _log_traffic(churn, now - timedelta(minutes=30), 300)
    config = MonitorConfig(alerts=["log"], min_breaches=2, of_runs=2)
    service.create_monitor(churn, endpoint="churn", config=config)
    shifted = _job(churn, data, "shifted", _frame(1, {"age": 2.0}))
    first = runs.run_monitor(churn, "churn", settings=settings, batch_job=shifted)
    assert first.breaches == ["batch:skew:age"]
    assert first.results["alerts"]["pending"] == ["batch:skew:age"]  # 1 of the 2 needed

    live = runs.run_monitor(churn, "churn", settings=settings, now=now)
    assert live.status == "ok", live.message
    second = runs.run_monitor(churn, "churn", settings=settings, batch_job=shifted)
    assert second.results["alerts"]["opened"] == ["batch:skew:age"]  # the live run not counted

    again = runs.run_monitor(churn, "churn", settings=settings, now=now)
    assert again.status == "ok" and again.results["alerts"]["resolved"] == []
    assert [a.key for a in service.list_alerts(churn, state="open")] == ["batch:skew:age"]


def _log_traffic(store: Store, start: datetime, rows: int) -> None:
    X = np.random.default_rng(5).normal(size=(rows, len(FEATURES)))
    first_ms = int(start.timestamp() * 1000)
    fields = ("churn", "churn", 1, 1, False, 200, 2.5)
    log = PayloadLog(log_root(store.home))
    log.write(
        [
            encode_row(
                (first_ms + i, f"r{i}", *fields, [X[i].tolist()], {"predict": [1]}, None, "predict")
            )
            for i in range(rows)
        ]
    )
    log.close()


def test_csv_input_reports_data_quality_and_a_baseline_without_predictions(
    settings: Settings, sklearn_model_file: Path, data: Path
) -> None:
    frame = _frame(4).astype(object)
    frame.loc[: ROWS // 4, "visits"] = "many"  # a quarter of the rows: text in a number
    frame.loc[ROWS // 2 : ROWS // 2 + 99, "tenure"] = "NA"  # 100 rows: missing
    source = data / "customers.csv"
    frame.to_csv(source, index=False)
    pq.write_table(pa.Table.from_pandas(_frame(0), preserve_index=False), data / "base.parquet")
    store = Store.open(settings)
    try:
        upload_model(
            store,
            principal=LOCAL_USER,
            inspector=inspect_here,
            source=sklearn_model_file,
            name="churn",
            baseline=data / "base.parquet",
        )
        endpoints.create_endpoint(store, name="churn")
        service.create_monitor(store, endpoint="churn", config=MonitorConfig())
        spec = JobSpec(input=str(source), output=str(data / "out"), workers=1, max_error_rate=0.5)
        job = batch.run(store, model_ref="churn:1", spec=spec)
        assert job.state == "partially_succeeded", job.message
        run = runs.run_monitor(store, "churn", settings=settings, batch_job=job.id)
    finally:
        store.close()

    assert run.rows == ROWS
    assert "batch:quality:mismatch_rate:visits" in run.breaches
    visits = run.results["features"]["visits"]["quality"]["mismatch_rate"]
    assert visits["value"] == pytest.approx((ROWS // 4 + 1) / ROWS) and visits["threshold"] == 0.05
    tenure = run.results["features"]["tenure"]["quality"]["missing_rate"]
    assert tenure["value"] == pytest.approx(100 / ROWS) and not tenure["breached"]
    predictions = run.results["predictions"]
    assert "skew" not in predictions and "without a verdict" in predictions["note"]
    assert predictions["count"] == run.results["source"]["rows_scored"] < ROWS
    assert sum(t["count"] for t in predictions["top"]) == predictions["count"]
    assert not any(key.startswith("batch:predictions") for key in run.breaches)


def test_an_unknown_job_is_not_found_with_a_hint(churn: Store, settings: Settings) -> None:
    service.create_monitor(churn, endpoint="churn", config=MonitorConfig())
    with pytest.raises(BatchJobNotFound, match="bj_nothing") as info:
        runs.run_monitor(churn, "churn", settings=settings, batch_job="bj_nothing")
    assert "cloche batch list" in (info.value.hint or "")
    assert service.list_runs(churn, "churn") == []


def test_an_unfinished_job_is_refused_with_a_hint(
    churn: Store, data: Path, settings: Settings
) -> None:
    service.create_monitor(churn, endpoint="churn", config=MonitorConfig())
    spec = JobSpec(input=str(data / "later.parquet"), output=str(data / "later-out"))
    queued = batch.submit(churn, model_ref="churn:1", spec=spec)
    with pytest.raises(JobStateConflict, match="is queued") as info:
        runs.run_monitor(churn, "churn", settings=settings, batch_job=queued.id)
    assert f"cloche batch show {queued.id}" in (info.value.hint or "")

    with churn.transaction() as session:  # ended without a single chunk written
        row = session.get(BatchJobRow, queued.id)
        assert row is not None
        row.state = "failed"
    with pytest.raises(JobStateConflict, match="without writing any predictions") as info:
        runs.run_monitor(churn, "churn", settings=settings, batch_job=queued.id)
    assert f"cloche batch resume {queued.id}" in (info.value.hint or "")
    assert service.list_runs(churn, "churn") == []


def test_a_version_without_a_baseline_is_refused_with_a_hint(
    churn: Store, data: Path, settings: Settings, sklearn_model_file: Path
) -> None:
    upload_model(
        churn, principal=LOCAL_USER, inspector=inspect_here, source=sklearn_model_file, name="plain"
    )
    job = _job(churn, data, "plain", _frame(1), ref="plain:1")
    service.create_monitor(churn, endpoint="churn", config=MonitorConfig())
    with pytest.raises(InvalidInput, match=r"plain:1.*no baseline") as info:
        runs.run_monitor(churn, "churn", settings=settings, batch_job=job)
    assert "cloche baselines create plain:1" in (info.value.hint or "")


def test_input_gone_since_the_job_is_a_failed_run(
    churn: Store, data: Path, settings: Settings
) -> None:
    job = _job(churn, data, "gone", _frame(1))
    (data / "gone.parquet").unlink()
    service.create_monitor(churn, endpoint="churn", config=MonitorConfig())
    run = runs.run_monitor(churn, "churn", settings=settings, batch_job=job)
    assert run.status == "failed" and "gone.parquet" in run.message
    assert service.list_runs(churn, "churn")[0].status == "failed"


def test_batch_job_runs_through_the_sdk(
    client: cloche.Client, churn: Store, data: Path, settings: Settings
) -> None:
    job = _job(churn, data, "shifted", _frame(1, {"age": 2.0}))
    client.monitors.create("churn")
    run = client.monitors.run("churn", batch_job=job)
    assert run.status == "breached" and run.breaches == ["batch:skew:age"]
    assert client.monitors.runs("churn")[0].id == run.id
    with pytest.raises(BatchJobNotFound):
        client.monitors.run("churn", batch_job="bj_nothing")
