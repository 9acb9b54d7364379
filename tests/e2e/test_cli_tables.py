"""Tables in an 80-column terminal: ids, aliases and dates shown whole, never cut to "…"."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e._cli import cloche, ok_json

NARROW = {"COLUMNS": "80"}
DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def shown(*args: str | Path) -> str:
    result = cloche(*args, env=NARROW)
    assert result.exit_code == 0, result.output
    assert all(len(line) <= 80 for line in result.stdout.splitlines()), result.stdout
    assert "…" not in result.stdout, result.stdout
    return result.stdout


def days_and_times(text: str) -> tuple[list[str], list[str]]:
    """The full dates (YYYY-MM-DD) and times (HH:MM) in ``text``; on two lines in narrow tables."""
    return DAY.findall(text), re.findall(r"(?<![\d:])\d{2}:\d{2}(?![\d:])", text)


@pytest.fixture
def registered(sklearn_model_file: Path) -> Path:
    """A model with a long name and long aliases: what used to be folded letter by letter."""
    upload = cloche(
        "models", "upload", sklearn_model_file, "--name", "customer-churn-predictor",
        "-a", "production", "-a", "staging-candidate", "-l", "team=growth",
    )  # fmt: skip
    assert upload.exit_code == 0, upload.output
    return sklearn_model_file


def test_models_list_at_80_columns_keeps_names_aliases_and_dates_whole(registered: Path) -> None:
    text = shown("models", "list")
    for whole in ("customer-churn-predictor", "production→1", "staging-candidate→1"):
        assert whole in text, text
    days, times = days_and_times(text)
    assert len(days) == 1 and len(times) == 1, text


def test_model_versions_at_80_columns_keep_aliases_and_dates_whole(registered: Path) -> None:
    text = shown("models", "show", "customer-churn-predictor")
    assert "production" in text and "staging-candidate" in text
    assert len(days_and_times(text)[0]) >= 2  # the model's updated line and the version's row


def test_batch_list_at_80_columns_keeps_job_ids_and_dates_whole(
    registered: Path, sample_parquet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(sample_parquet.parent)  # the working folder is a place batch may read
    ref = "customer-churn-predictor:1"
    job = ok_json("batch", "run", ref, "--input", sample_parquet, "--detach")
    text = shown("batch", "list")
    assert job["id"] in text and ref in text, text
    days, times = days_and_times(text)
    assert len(days) == 1 and len(times) == 1, text


def test_tokens_list_at_80_columns_keeps_ids_and_dates_whole() -> None:
    made = [
        ok_json("tokens", "create", "--role", role, "--name", f"ci-readonly-dashboard-{role}")
        for role in ("viewer", "predictor")
    ]
    text = shown("tokens", "list")
    for token in made:
        assert token["id"] in text, text
    days, times = days_and_times(text)
    assert len(days) == 2 and len(times) == 2, text


def test_wide_terminals_keep_each_date_on_one_line(registered: Path) -> None:
    result = cloche("models", "list", env={"COLUMNS": "160"})
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", result.stdout), result.stdout
