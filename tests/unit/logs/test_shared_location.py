"""A shared payload-log location on a folder: each replica's compaction writes under its own
id, readers list every replica's files of the hours asked for, retention prunes whole hours
across replicas, and one replica at a time holds the retention lease."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from cloche.config import Settings
from cloche.logs import service as logs
from cloche.logs.location import LogLocation, hour_of
from cloche.logs.retention import apply_retention
from cloche.logs.shared import compaction_args, hold_retention_lease, replica_id
from cloche.monitoring.log_profiles import Spec, load_profile, write_spec
from cloche.serving.payload_log import PayloadLog, encode_row
from cloche.store.layout import SharedLog
from cloche.store.store import Store

NOW = datetime(2026, 11, 25, 12, 30, tzinfo=UTC)


def _log(root: Path, at: datetime, rid: str) -> None:
    """One closed segment holding one row at ``at``."""
    log = PayloadLog(root)
    row = (int(at.timestamp() * 1000), rid, "churn", "churn", 1, 7, False, 200, 1.5,
           np.array([[1.0, 2.0]]), {"predict": np.array([1])}, None, "predict")  # fmt: skip
    log.write([encode_row(row)])
    log.close()


def _shared(tmp_path: Path, replica: str | None = None) -> LogLocation:
    return LogLocation.shared(SharedLog(str(tmp_path / "shared")), replica=replica)


def test_each_replica_writes_under_its_own_id_and_readers_see_both(tmp_path: Path) -> None:
    for name in ("a", "b"):
        _log(tmp_path / name, NOW - timedelta(hours=2), f"{name}-old")
        _log(tmp_path / name, NOW, f"{name}-new")
        written: list[str] = []
        assert logs.compact(tmp_path / name, _shared(tmp_path, name), written=written) == 2
        assert all(f"/replica={name}/" in path for path in written)
        assert not list((tmp_path / name).glob("endpoint=*"))  # nothing left in its own folder

    table = logs.read_log(tmp_path / "a", "churn", shared=SharedLog(str(tmp_path / "shared")))
    assert sorted(table["request_id"].to_pylist()) == ["a-new", "a-old", "b-new", "b-old"]
    # A window lists only its own hours: the older hour's files are not even listed.
    recent = _shared(tmp_path).files("churn", NOW.replace(minute=0), NOW + timedelta(hours=1))
    assert [hour_of(f.path) for f in recent] == [NOW.replace(minute=0)] * 2


def test_a_write_in_progress_is_invisible_to_readers(tmp_path: Path) -> None:
    location = _shared(tmp_path, "a")
    folder = location.hour_folder("churn", "2026-11-25", "12")
    Path(folder).mkdir(parents=True)
    (Path(folder) / ".seg-1.parquet.123.tmp").write_bytes(b"half a file")
    assert location.files("churn") == []


def test_retention_of_a_shared_log_removes_old_hours_of_every_replica(tmp_path: Path) -> None:
    for name in ("a", "b"):
        _log(tmp_path / name, NOW - timedelta(days=40), f"{name}-old")
        _log(tmp_path / name, NOW, f"{name}-new")
        logs.compact(tmp_path / name, _shared(tmp_path, name))
    removed = apply_retention(
        _shared(tmp_path), max_age=timedelta(days=35), max_bytes=None, now=NOW
    )
    assert (removed.files, removed.rows) == (2, 2)
    left = logs.read_log(tmp_path / "a", "churn", shared=SharedLog(str(tmp_path / "shared")))
    assert sorted(left["request_id"].to_pylist()) == ["a-new", "b-new"]


def test_the_compaction_child_writes_and_profiles_under_its_replica_id(tmp_path: Path) -> None:
    _log(tmp_path / "a", NOW, "a-1")
    shared = str(tmp_path / "shared")
    spec = Spec({"x": "numeric", "y": "numeric"})  # what a monitor records for the endpoint
    write_spec(tmp_path / "a", "churn", spec, _shared(tmp_path))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cloche.logs.compact",
            str(tmp_path / "a"),
            f"--shared={shared}",
            "--replica=a",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"rows": 1' in done.stdout
    (data,) = _shared(tmp_path).files("churn")
    assert data.path.count("/replica=a/") == 1
    found = load_profile(data.path, spec, _shared(tmp_path))
    assert found is not None and found.header["whole"] is not None


def test_the_compaction_child_refuses_a_shared_log_without_a_replica(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cloche.logs.compact", str(tmp_path), f"--shared={tmp_path}"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "--shared needs --replica" in done.stderr


def test_one_holder_at_a_time_prunes_the_shared_log(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", logs={"shared": str(tmp_path / "shared")})
    store = Store.open(settings)
    try:
        assert hold_retention_lease(store, "host-a:1")
        assert not hold_retention_lease(store, "host-b:2")  # a holds it
        assert hold_retention_lease(store, "host-a:1")  # renewed by its holder
        args = compaction_args(settings, store, retention_due=True)  # held by a: no retention
    finally:
        store.close()
    assert f"--replica={replica_id(settings)}" in args and "--shared-retention" not in args


def test_without_a_shared_log_the_compaction_child_gets_no_arguments(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    store = Store.open(settings)
    try:
        assert compaction_args(settings, store, retention_due=True) == []
    finally:
        store.close()


def test_the_default_replica_id_is_stable_and_differs_between_homes(tmp_path: Path) -> None:
    one = Settings(home=tmp_path / "one")
    assert replica_id(one) == replica_id(Settings(home=tmp_path / "one"))
    assert replica_id(one) != replica_id(Settings(home=tmp_path / "two"))
    assert replica_id(Settings(home=tmp_path, logs={"replica": "eu-1"})) == "eu-1"


@pytest.mark.parametrize("bad", ["", "../up", "a/b", "-x"])
def test_a_replica_id_must_be_a_plain_name(bad: str) -> None:
    with pytest.raises(ValueError, match="replica"):
        Settings(logs={"replica": bad})
