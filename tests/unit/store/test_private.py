"""CLOCHE_HOME is the owner's only: the folder, the database, artifacts and payload logs."""

from __future__ import annotations

import stat
from pathlib import Path

from cloche.config import Settings
from cloche.serving.payload_log import SegmentWriter
from cloche.store.private import private_dir
from cloche.store.store import Store


def _group_other_bits(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode) & (stat.S_IRWXG | stat.S_IRWXO)


def test_store_open_makes_home_database_and_artifacts_owner_only(
    tmp_path: Path, sklearn_model_file: Path
) -> None:
    settings = Settings(home=tmp_path / "home")
    store = Store.open(settings)
    try:
        store.artifacts.put("models/churn/1", sklearn_model_file)
        with store.transaction():
            pass
    finally:
        store.close()
    home = settings.home
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert _group_other_bits(home / "cloche.db") == 0
    assert _group_other_bits(home / "artifacts") == 0  # so no one else reaches inside
    files = [p for p in (home / "artifacts").rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o400, path


def test_a_wider_home_of_ours_is_narrowed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    Store.open(Settings(home=home)).close()
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE(private_dir(tmp_path / "new" / "home").stat().st_mode) == 0o700


def test_payload_log_segments_and_locks_are_owner_only(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path / "logs")
    writer.write(b'{"x": 1}\n')
    try:
        files = list((tmp_path / "logs").iterdir())
        assert len(files) == 2  # the segment and its lock
        for path in files:
            assert _group_other_bits(path) == 0, path
    finally:
        writer.close()
