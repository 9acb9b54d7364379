"""The paths a user types for a batch job, made absolute from their folder and checked before
anything is sent (cloche/client/_paths.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloche.client._paths import job_paths
from cloche.errors import InvalidInput


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("x\n1\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("given", ["data/a.csv", "data", "data/*.csv", "./data/../data/a.csv"])
def test_relative_inputs_become_absolute_from_the_current_folder(here: Path, given: str) -> None:
    input, output = job_paths(given, "out")
    assert Path(input).is_absolute()
    assert Path(input).resolve().parent in (here, here / "data")
    assert output == str(here / "out")


def test_output_loses_its_trailing_slash_and_may_have_missing_parents(here: Path) -> None:
    assert job_paths("data", "preds/new/")[1] == str(here / "preds" / "new")


@pytest.mark.parametrize("url", ["s3://bucket/in/*.parquet", "gs://b/x.csv"])
def test_object_store_urls_pass_through_untouched(here: Path, url: str) -> None:
    assert job_paths(url, "out")[0] == url


@pytest.mark.parametrize(
    ("input", "words"),
    [("nope.csv", "does not exist"), ("data/*.parquet", "matches no file")],
)
def test_a_missing_input_is_refused_naming_where_it_looked(
    here: Path, input: str, words: str
) -> None:
    with pytest.raises(InvalidInput, match=words) as caught:
        job_paths(input, "out")
    assert str(here) in caught.value.message
    assert caught.value.hint and "relative to the folder you run this in" in caught.value.hint


def test_an_output_under_a_file_is_refused(here: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot be created"):
        job_paths("data", "data/a.csv/out")
    with pytest.raises(InvalidInput, match="is a file"):
        job_paths("data", "data/a.csv")


def test_absolute_paths_for_a_remote_server_are_not_checked_here(here: Path) -> None:
    assert job_paths("/srv/data/in.csv", "/srv/out", here=False) == (
        "/srv/data/in.csv",
        "/srv/out",
    )
    with pytest.raises(InvalidInput, match="does not exist"):
        job_paths("missing.csv", "/srv/out", here=False)
