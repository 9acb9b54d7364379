"""The output folder's rules, cancelling, and resuming a job where it stopped."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from cloche.batch import engine_local
from cloche.batch.engine_local import job_lock
from cloche.batch.spec import JobSpec, Progress
from cloche.errors import BatchOutputExists, BatchResumeMismatch, InvalidInput, JobStateConflict
from tests.unit.batch.conftest import Models, Run, numeric_table, read_output, write


def _spec(tmp_path: Path, source: Path, out: str = "out", **fields: object) -> JobSpec:
    return JobSpec(input=str(source), output=str(tmp_path / out), workers=1, **fields)  # type: ignore[arg-type]


def test_existing_output_without_overwrite_is_refused(
    models: Models, run: Run, tmp_path: Path
) -> None:
    source = write(numeric_table(20), tmp_path / "in.parquet")
    run(models.numeric, input=str(source))
    with pytest.raises(BatchOutputExists, match="is not empty"):
        engine_local.prepare(_spec(tmp_path, source), models.numeric)


def test_overwrite_replaces_only_a_jobs_own_files(models: Models, run: Run, tmp_path: Path) -> None:
    source = write(numeric_table(90), tmp_path / "in.parquet")
    run(models.numeric, input=str(source), chunk_rows=30)
    outcome = run(models.numeric, input=str(source), chunk_rows=50, overwrite=True)

    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [
        ".cloche-job",
        "manifest.json",
        "predictions-00000-of-00002.parquet",
        "predictions-00001-of-00002.parquet",
    ]
    assert outcome.rows_scored == 90


def test_overwrite_refuses_a_folder_holding_other_files(models: Models, tmp_path: Path) -> None:
    source = write(numeric_table(20), tmp_path / "in.parquet")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    (tmp_path / "out" / "predictions-00000-of-00001.parquet").write_text("old")

    with pytest.raises(BatchOutputExists, match=r"did not write: notes\.txt"):
        engine_local.prepare(_spec(tmp_path, source, overwrite=True), models.numeric)
    assert (tmp_path / "out" / "predictions-00000-of-00001.parquet").exists()


def test_failed_checks_leave_the_previous_output_alone(
    models: Models, run: Run, tmp_path: Path
) -> None:
    source = write(numeric_table(20), tmp_path / "in.parquet")
    first = run(models.numeric, input=str(source))
    bad = write(numeric_table(20).drop_columns(["f1"]), tmp_path / "bad.parquet")
    with pytest.raises(InvalidInput):
        engine_local.prepare(_spec(tmp_path, bad, overwrite=True), models.numeric)
    assert all(Path(p).exists() for p in first.output_files)


def test_cancel_keeps_finished_chunks_and_resume_completes_the_job(
    models: Models, run: Run, tmp_path: Path
) -> None:
    source = write(numeric_table(300, seed=21), tmp_path / "in.csv")
    spec = _spec(tmp_path, source, "out", chunk_rows=50, id_column="id")
    out = tmp_path / "out"

    plan = engine_local.prepare(spec, models.numeric)
    stop = lambda: len(list(out.glob("predictions-*"))) >= 2  # noqa: E731
    cancelled = engine_local.execute(plan, spec, models.numeric, should_stop=stop)
    assert cancelled.state == "cancelled" and len(cancelled.output_files) == 2
    assert "resume" in cancelled.message

    seen: list[Progress] = []
    plan = engine_local.prepare(spec, models.numeric, resume=True)
    resumed = engine_local.execute(plan, spec, models.numeric, progress=seen.append)
    assert resumed.state == "succeeded" and resumed.rows_scored == 300
    assert seen[0].rows_at_start == 100 and seen[-1].rows_done == 300

    run(models.numeric, input=str(source), output=str(tmp_path / "whole"), chunk_rows=50,
        id_column="id")  # fmt: skip
    assert read_output(out).equals(read_output(tmp_path / "whole"))


def test_resume_rescores_only_missing_chunks_and_removes_temp_files(
    models: Models, tmp_path: Path
) -> None:
    source = write(numeric_table(90, seed=22), tmp_path / "in.jsonl")
    spec = _spec(tmp_path, source, chunk_rows=30)
    out = tmp_path / "out"
    plan = engine_local.prepare(spec, models.numeric)
    engine_local.execute(plan, spec, models.numeric)
    whole = read_output(out)
    (out / "predictions-00001-of-00003.parquet").unlink()
    (out / "predictions-00001-of-00003.parquet.tmp-1-abcd").write_text("torn")
    (out / "errors-00001-of-00003.jsonl").write_text("{}\n")  # from a try that never committed

    seen: list[Progress] = []
    plan = engine_local.prepare(spec, models.numeric, resume=True)
    outcome = engine_local.execute(plan, spec, models.numeric, progress=seen.append)

    assert outcome.state == "succeeded" and seen[0].rows_at_start == 60
    assert sorted(p.name for p in out.glob("*-00001-*")) == ["predictions-00001-of-00003.parquet"]
    assert read_output(out).equals(whole)


def test_resume_refuses_a_changed_input_model_or_layout(models: Models, tmp_path: Path) -> None:
    source = write(numeric_table(40), tmp_path / "in.csv")
    spec = _spec(tmp_path, source, chunk_rows=20)
    engine_local.prepare(spec, models.numeric)

    with pytest.raises(BatchResumeMismatch, match="chunk_rows was 20, now 10"):
        engine_local.prepare(replace(spec, chunk_rows=10), models.numeric, resume=True)
    with pytest.raises(BatchResumeMismatch, match="the model changed"):
        engine_local.prepare(spec, replace(models.numeric, sha256="other"), resume=True)
    source.write_text(source.read_text() + source.read_text().splitlines()[1] + "\n")
    with pytest.raises(BatchResumeMismatch, match=r"in\.csv changed"):
        engine_local.prepare(spec, models.numeric, resume=True)


def test_resume_without_a_plan_says_so(models: Models, tmp_path: Path) -> None:
    source = write(numeric_table(10), tmp_path / "in.csv")
    with pytest.raises(InvalidInput, match="no batch job to resume"):
        engine_local.prepare(_spec(tmp_path, source), models.numeric, resume=True)


def test_a_second_run_on_the_same_output_is_refused(models: Models, tmp_path: Path) -> None:
    source = write(numeric_table(10), tmp_path / "in.csv")
    spec = _spec(tmp_path, source)
    plan = engine_local.prepare(spec, models.numeric)
    with job_lock(plan.output_dir):
        with pytest.raises(JobStateConflict):
            engine_local.execute(plan, spec, models.numeric)
        with pytest.raises(JobStateConflict):  # nor may an overwrite delete its files
            engine_local.prepare(replace(spec, overwrite=True), models.numeric)
