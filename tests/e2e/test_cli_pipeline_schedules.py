"""`cloche pipelines schedule` and `cloche pipelines schedules`: a registered pipeline on a cron
schedule, listed, paused, resumed and deleted from the CLI, and run by `cloche up`."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from cloche.config import Settings
from cloche.pipelines.schedule_table import PipelineScheduleRow
from cloche.store.store import Store
from cloche.store.tables import utcnow
from tests.e2e._cli import cloche, ok_json
from tests.e2e._servers import cloche_up

PIPELINE = """
from cloche.pipelines import component, pipeline


@component
def shout(word: str) -> str:
    return word.upper()


@pipeline(name="nightly")
def nightly(word: str = "hi", times: int = 1) -> None:
    shout(word=word)
"""


@pytest.fixture
def nightly(tmp_path: Path) -> str:
    path = tmp_path / "nightly.py"
    path.write_text(PIPELINE)
    assert cloche("pipelines", "register", path).exit_code == 0
    return "nightly"


def test_schedule_list_show_pause_resume_delete(nightly: str) -> None:
    made = ok_json(
        "pipelines", "schedule", nightly, "--cron", "0 6 * * 1", "-p", "word=yo",
        "--max-runs", "3", "--max-concurrent", "1", "--end", "2999-01-01T00:00",
    )  # fmt: skip
    assert made["params"] == {"word": "yo"} and made["max_runs"] == 3
    assert made["state"] == "active"
    assert [s["id"] for s in ok_json("pipelines", "schedules", "list")] == [made["id"]]
    shown = ok_json("pipelines", "schedules", "show", made["id"][:8])
    assert shown["cron"] == "0 6 * * 1" and shown["runs"] == []
    paused = cloche("pipelines", "schedules", "pause", made["id"][:8])
    assert paused.exit_code == 0 and f"paused {made['id']}" in paused.output
    assert ok_json("pipelines", "schedules", "show", made["id"])["enabled"] is False
    resumed = cloche("pipelines", "schedules", "resume", made["id"])
    assert resumed.exit_code == 0 and "next run" in resumed.output
    listed = cloche("pipelines", "schedules", "list")
    assert "active" in listed.output and "0/3" in listed.output
    assert cloche("pipelines", "schedules", "delete", made["id"][:8]).exit_code == 0
    assert ok_json("pipelines", "schedules", "list") == []
    gone = cloche("pipelines", "schedules", "show", made["id"])
    assert gone.exit_code == 4 and "cloche pipelines schedules list" in gone.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cron", "every day"], "is not a cron expression"),
        (["--cron", "0 6 * * *", "-p", "colour=red"], "has no parameter 'colour'"),
        (["--cron", "0 6 * * *", "--start", "tomorrow"], "--start 'tomorrow' is not a time"),
        (["--cron", "0 6 * * *", "--end", "2001-01-01"], "has already passed"),
        (
            ["--cron", "0 6 * * *", "--start", "2999-01-02", "--end", "2999-01-01"],
            "--start must be before --end",
        ),
    ],
)
def test_a_bad_schedule_exits_2_with_what_to_write(
    nightly: str, args: list[str], message: str
) -> None:
    result = cloche("pipelines", "schedule", nightly, *args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert ok_json("pipelines", "schedules", "list") == []


def test_a_schedule_of_an_unregistered_pipeline_is_not_found() -> None:
    result = cloche("pipelines", "schedule", "nowhere", "--cron", "0 6 * * *")
    assert result.exit_code == 4 and "cloche pipelines register" in result.output


@pytest.mark.slow
def test_cloche_up_runs_a_scheduled_run_made_by_the_schedule(nightly: str) -> None:
    made = ok_json("pipelines", "schedule", nightly, "--cron", "* * * * *", "--max-runs", "1")
    home = Path(os.environ["CLOCHE_HOME"])
    # Its first fire time (the next whole minute) brought forward to the last one, as if waited
    # for: when cron times fall is the unit tests' part (test_schedule_plan.py).
    store = Store.open(Settings(home=home))
    try:
        with store.transaction() as session:
            row = session.get(PipelineScheduleRow, made["id"])
            assert row is not None
            row.next_run_at = utcnow().replace(second=0, microsecond=0)  # a cron time
    finally:
        store.close()
    with cloche_up(home, env={"CLOCHE_SCHEDULER__TICK_SECONDS": "0.3"}):
        deadline = time.monotonic() + 90
        while True:
            runs = ok_json("pipelines", "runs")
            if runs and runs[0]["state"] in ("succeeded", "failed"):
                break
            assert time.monotonic() < deadline, runs
            time.sleep(0.5)
    assert [(r["trigger"], r["state"], r["created_by"]) for r in runs] == [
        (f"schedule:{made['id']}", "succeeded", f"schedule:{made['id']}")
    ]
    after = ok_json("pipelines", "schedules", "show", made["id"])
    assert after["runs_made"] == 1 and after["next_run_at"] is None
    assert after["runs"] == [runs[0]["id"]]
