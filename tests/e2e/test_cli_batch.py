"""`cloche batch` as a user runs it: score, kill -9 mid-job, resume, and get the same rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import cloche
from cloche.config import Settings
from cloche.store.store import Store
from cloche.store.tables import BatchScheduleRow, utcnow

CLOCHE = str(Path(sys.executable).parent / "cloche")
FEATURES = ["a", "b", "c"]

# A model slow enough (20 ms a call) that a job of many small chunks can be killed mid-way.
SLOW_MODEL = textwrap.dedent(
    """
    import time
    import numpy as np

    class Slow:
        def predict(self, X):
            time.sleep(0.02)
            X = np.asarray(X, dtype=float)
            return X[:, 0] * 2.0 + X[:, 1] - X[:, 2]

        def signature(self):
            return {
                "inputs": [{"name": n, "dtype": "float64"} for n in ("a", "b", "c")],
                "task": "regression",
            }

    def load(path):
        return Slow()
    """
)


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOCHE_")}
    return env | {"CLOCHE_HOME": str(home), "COLUMNS": "160"}


def _cloche(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLOCHE, *args], env=_env(home), capture_output=True, text=True, timeout=120, cwd=cwd
    )


@pytest.fixture
def slow_model(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    folder = tmp_path / "slow"
    folder.mkdir()
    (folder / "model.py").write_text(SLOW_MODEL)
    cloche.Client(settings=Settings(home=home)).models.upload(folder, name="slow")
    return home


def _write_data(path: Path, rows: int) -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(rows, len(FEATURES)))
    table = pa.table({n: X[:, i] for i, n in enumerate(FEATURES)})
    table = table.append_column("key", pa.array(np.arange(rows) * 10))
    pq.write_table(table, path, row_group_size=500)


def _predictions(folder: Path) -> pa.Table:
    return pa.concat_tables(pq.read_table(f) for f in sorted(folder.glob("predictions-*")))


def test_kill_9_mid_job_then_resume_gives_exactly_the_uninterrupted_rows(
    slow_model: Path, tmp_path: Path
) -> None:
    home = slow_model
    data = tmp_path / "data.parquet"
    _write_data(data, 6_000)
    common = ["--input", str(data), "--id-column", "key", "--chunk-rows", "100", "--workers", "1"]

    reference = _cloche(home, "batch", "run", "slow:1", "--output", str(tmp_path / "ref"), *common)
    assert reference.returncode == 0, reference.stderr

    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [CLOCHE, "batch", "run", "slow:1", "--output", str(out), *common],
        env=_env(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # so the kill takes its worker processes too, like a crash
    )
    deadline = time.monotonic() + 60
    while len(list(out.glob("predictions-*"))) < 5:
        assert proc.poll() is None and time.monotonic() < deadline, "the job ended too soon"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    done_before = len(list(out.glob("predictions-*")))
    assert done_before < 60

    listed = json.loads(_cloche(home, "batch", "list", "--json").stdout)
    killed = next(j for j in listed if j["spec"]["output"] == str(out))
    assert killed["state"] == "running"  # as the killed process left it

    resumed = _cloche(home, "batch", "resume", killed["id"][:8])
    assert resumed.returncode == 0, resumed.stderr
    shown = json.loads(_cloche(home, "batch", "show", killed["id"], "--json").stdout)
    assert shown["state"] == "succeeded"
    assert shown["progress"]["rows_done"] == 6_000

    got, want = _predictions(out), _predictions(tmp_path / "ref")
    assert got.num_rows == 6_000
    assert got.equals(want)
    assert not [p for p in out.iterdir() if ".tmp" in p.name or p.name.startswith(".tmp")]


def test_run_shows_progress_and_where_the_output_is(slow_model: Path, tmp_path: Path) -> None:
    data = tmp_path / "data.parquet"
    _write_data(data, 300)
    result = _cloche(
        slow_model, "batch", "run", "slow:1", "-i", str(data), "-o", str(tmp_path / "o")
    )
    assert result.returncode == 0, result.stderr
    assert "300/300 rows" in result.stderr
    assert "succeeded" in result.stdout and str(tmp_path / "o") in result.stdout


def test_existing_output_without_overwrite_is_refused_with_a_hint(
    slow_model: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data.parquet"
    _write_data(data, 50)
    args = ["batch", "run", "slow:1", "-i", str(data), "-o", str(tmp_path / "o")]
    assert _cloche(slow_model, *args).returncode == 0
    again = _cloche(slow_model, *args)
    assert again.returncode != 0
    assert "--overwrite" in again.stderr
    assert _cloche(slow_model, *args, "--overwrite").returncode == 0


@pytest.mark.parametrize(
    ("args", "words", "code"),
    [
        (["ghost:1", "-i", "x.parquet"], "ghost", 4),
        (["slow:1", "-i", "missing/*.parquet"], "matches no file", 2),
        (["slow:1", "-i", "nope.parquet"], "does not exist", 2),
        (["slow:1", "-i", "x.parquet", "--output-format", "xlsx"], "xlsx", 2),
        (["slow:1", "-i", "x.parquet", "--schedule", "every monday"], "cron", 2),
    ],
)
def test_bad_batch_commands_say_what_is_wrong(
    slow_model: Path, tmp_path: Path, args: list[str], words: str, code: int
) -> None:
    _write_data(tmp_path / "x.parquet", 10)
    result = _cloche(slow_model, "batch", "run", *args, "-o", str(tmp_path / "o"), cwd=tmp_path)
    assert result.returncode == code, (result.returncode, result.stderr)
    assert words in result.stderr


def test_cancel_and_resume_unknown_job_are_clear(slow_model: Path) -> None:
    for command in ("cancel", "resume", "show"):
        result = _cloche(slow_model, "batch", command, "bj_doesnotexist")
        assert result.returncode == 4
        assert "cloche batch list" in result.stderr


def test_a_path_that_does_not_exist_is_refused_before_anything_is_queued(
    slow_model: Path, tmp_path: Path
) -> None:
    for extra in (["--schedule", "0 6 * * 1"], ["--detach"]):
        result = _cloche(
            slow_model, "batch", "run", "slow:1", "-i", "data/typo.parquet", *extra, cwd=tmp_path
        )
        assert result.returncode == 2, result.stderr
        assert "does not exist" in result.stderr and str(tmp_path / "data") in result.stderr
    assert json.loads(_cloche(slow_model, "batch", "list", "--json").stdout) == []
    schedules = _cloche(slow_model, "batch", "schedules", "list", "--json")
    assert json.loads(schedules.stdout) == []


def test_a_schedule_keeps_the_absolute_paths_typed_relative_and_shows_them_cleanly(
    slow_model: Path, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    _write_data(project / "data" / "in.parquet", 10)
    args = ["-i", "data/in.parquet", "-o", "weekly//", "--schedule", "0 6 * * 1", "--json"]
    made = _cloche(slow_model, "batch", "run", "slow:1", *args, cwd=project)
    assert made.returncode == 0, made.stderr
    schedule = json.loads(made.stdout)
    assert schedule["spec"]["input"] == str(project / "data" / "in.parquet")
    assert schedule["spec"]["output"] == str(project / "weekly")

    shown = _cloche(slow_model, "batch", "schedules", "show", schedule["id"][:7])
    assert shown.returncode == 0, shown.stderr
    assert f"output {project / 'weekly'}/<run time>" in shown.stdout
    assert "//" not in shown.stdout
    paused = _cloche(slow_model, "batch", "schedules", "pause", schedule["id"][:7])
    assert paused.returncode == 0 and schedule["id"] in paused.stdout


def test_an_ambiguous_schedule_prefix_exits_2_naming_the_matches(slow_model: Path) -> None:
    settings = Settings(home=slow_model)
    store = Store.open(settings)
    try:
        with store.transaction() as session:
            for id_ in ("bs_abc111", "bs_abc222"):
                session.add(
                    BatchScheduleRow(
                        id=id_,
                        model_ref="slow:1",
                        cron="0 6 * * 1",
                        spec={"input": "/srv/in", "output": "/srv/out"},
                        enabled=True,
                        next_run_at=utcnow(),
                        created_by="test",
                    )
                )
    finally:
        store.close()
    for command in ("show", "pause", "resume", "delete"):
        result = _cloche(slow_model, "batch", "schedules", command, "bs_abc")
        assert result.returncode == 2, (command, result.stderr)
        assert "bs_abc111, bs_abc222" in result.stderr
