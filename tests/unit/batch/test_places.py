"""Where a batch job the server runs may read and write: local paths inside the allowed folders
(links resolved, every file a pattern or folder names), object-store URLs under listed prefixes.

No object-store server runs here (moto is not in requirements/test.txt), so the URL rules are
tested on the check itself; the REST tests in tests/integration/test_batch_api_places.py send
them through the API."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloche.batch.places import Places, check_absolute, check_prefix
from cloche.batch.spec import JobSpec
from cloche.config import Settings
from cloche.errors import DestinationRefused, InvalidInput

URLS = ("s3://bucket-a/prefix", "gs://b")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """An allowed folder with a file, a link to a file outside, and a secret outside."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "in.parquet").write_bytes(b"x")
    (folder / "sub").mkdir()
    (tmp_path / "secret.parquet").write_bytes(b"s")
    (folder / "leak.parquet").symlink_to(tmp_path / "secret.parquet")
    (folder / "out-link").symlink_to(tmp_path, target_is_directory=True)
    return folder


def places(data: Path) -> Places:
    return Places((data.resolve(),), URLS)


def test_paths_inside_the_allowed_folder_pass(data: Path) -> None:
    allowed = places(data)
    allowed.check_spec(JobSpec(input=str(data / "in.parquet"), output=str(data / "out")))
    allowed.check_spec(JobSpec(input=str(data / "in*.parquet"), output=str(data / "a/b")))
    allowed.check_input("s3://bucket-a/prefix/day=1/*.parquet")
    allowed.check_input("gs://b")
    allowed.check_files([str(data / "in.parquet"), "S3://bucket-a/prefix/x.parquet"])


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("/etc/passwd", "outside the folders"),
        ("{data}/../secret.parquet", "outside the folders"),  # traversal
        ("{data}/leak.parquet", "outside the folders"),  # a link inside pointing out
        ("{data}/*.parquet", "outside the folders"),  # a pattern matching that link
        ("{data}/out-link/secret.parquet", "outside the folders"),  # through a linked folder
        ("{data}", "outside the folders"),  # a folder holding the link
        ("{data}/*/../../secret.parquet", "outside the folders"),
        ("file://{data}/in.parquet", "object-store prefix"),
        ("memory://bucket-a/prefix/x", "object-store prefix"),
        ("http://169.254.169.254/latest", "object-store prefix"),
        ("ftp://host/x.csv", "object-store prefix"),
        ("simplecache::s3://bucket-a/prefix/x", "chains filesystems"),
        ("zip://x.csv::s3://bucket-a/prefix/a.zip", "chains filesystems"),
        ("s3://bucket-b/prefix/x.parquet", "object-store prefix"),  # an unlisted bucket
        ("s3://bucket-a/prefix2/x.parquet", "object-store prefix"),  # only the listed prefix
        ("s3://bucket-a@evil/prefix/x", "object-store prefix"),
        ("s3://bucket-a/prefix/../other/x", "'..'"),
        ("gcs://b/x", "object-store prefix"),  # another name of the scheme is not listed
        ("data:text/plain,1", "object-store prefix"),
    ],
)
def test_forbidden_inputs_are_refused_naming_the_setting(
    data: Path, given: str, words: str
) -> None:
    with pytest.raises(DestinationRefused, match=words) as info:
        places(data).check_input(given.format(data=data))
    assert "CLOCHE_BATCH__ALLOWED_" in (info.value.hint or "")
    assert info.value.http_status == 403


@pytest.mark.parametrize("output", ["/tmp/elsewhere", "{data}/../x", "{data}/out-link/o", "s3://b"])
def test_an_output_outside_is_refused(data: Path, output: str) -> None:
    spec = JobSpec(input=str(data / "in.parquet"), output=output.format(data=data))
    with pytest.raises(DestinationRefused):
        places(data).check_spec(spec)


def test_planned_files_are_checked_one_by_one(data: Path) -> None:
    with pytest.raises(DestinationRefused, match=r"leak\.parquet"):
        places(data).check_files([str(data / "in.parquet"), str(data / "leak.parquet")])


def test_settings_list_only_object_store_prefixes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOCHE_BATCH__ALLOWED_URLS", '["s3://bucket-a/prefix", "gs://b"]')
    monkeypatch.setenv("CLOCHE_BATCH__RAY_ADDRESS", "ray://head:10001")
    settings = Settings()
    assert Places.from_settings(settings).urls == URLS
    assert settings.batch.ray_address == "ray://head:10001"
    for bad in ("file:///data", "memory://x", "simplecache::s3://a", "s3://", "http://h/x"):
        with pytest.raises(ValueError, match="object-store prefix"):
            check_prefix(bad)


@pytest.mark.parametrize(
    ("input", "output", "named"),
    [
        ("data/in.csv", "/srv/out", "input 'data/in.csv' is relative"),
        ("/srv/in.csv", "out", "output 'out' is relative"),
        ("in.csv", "~/out", "input 'in.csv' and output '~/out' are relative"),
    ],
)
def test_relative_paths_are_refused_saying_they_must_be_absolute(
    input: str, output: str, named: str
) -> None:
    with pytest.raises(InvalidInput, match="must be absolute on the server") as caught:
        check_absolute(JobSpec(input=input, output=output))
    assert named in caught.value.message
    assert caught.value.hint and "absolute" in caught.value.hint


def test_absolute_paths_and_urls_pass_the_absolute_check() -> None:
    check_absolute(JobSpec(input="s3://bucket-a/prefix/*.parquet", output="/srv/out"))
