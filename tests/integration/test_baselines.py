"""`baselines create`: attach (or replace) a version's baseline after upload and profile it
once, through the SDK's two transports (`client` fixture) and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

import cloche
from cloche.cli.app import app
from cloche.config import Settings
from cloche.errors import InvalidDataset, VersionNotFound
from cloche.store.store import Store
from cloche.store.tables import ProfileRow

FEATURES = ["tenure", "spend", "visits", "age"]


def dataset(path: Path, rows: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    pq.write_table(pa.table({f: rng.normal(size=rows) for f in FEATURES}), path)
    return path


def profile_keys(settings: Settings) -> list[str]:
    store = Store.open(settings)
    try:
        with store.transaction() as session:
            return list(session.scalars(select(ProfileRow.key)))
    finally:
        store.close()


def test_a_baseline_is_attached_profiled_once_and_replaced(
    client: cloche.Client, sklearn_model_file: Path, tmp_path: Path, settings: Settings
) -> None:
    client.models.upload(sklearn_model_file, name="churn", aliases=["prod"])
    first = dataset(tmp_path / "train.parquet", 500, 0)

    made = client.monitors.create_baseline("churn@prod", first)
    assert made.model == "churn:1" and made.rows == 500 and made.columns == FEATURES
    assert made.profile is not None and made.profile["rows"] == 500
    assert set(made.profile["features"]) == set(FEATURES)
    assert made.profile["features"]["spend"]["kind"] == "numeric"
    shown = client.models.show("churn:1").baseline
    assert shown is not None and shown["sha256"] == made.sha256 and "key" not in shown
    assert profile_keys(settings) == [f"baseline:{made.sha256}"]  # profiled now, once

    again = client.monitors.create_baseline("churn:1", first)  # the same file: same profile
    assert again.sha256 == made.sha256 and len(profile_keys(settings)) == 1

    other = client.monitors.create_baseline("churn:1", dataset(tmp_path / "new.parquet", 300, 1))
    assert other.rows == 300 and other.file == "new.parquet"
    assert client.models.show("churn:1").baseline["sha256"] == other.sha256  # type: ignore[index]
    assert f"baseline:{other.sha256}" in profile_keys(settings)


def test_bad_baselines_are_clear_errors(
    client: cloche.Client, sklearn_model_file: Path, tmp_path: Path
) -> None:
    client.models.upload(sklearn_model_file, name="churn")
    with pytest.raises(VersionNotFound):
        client.monitors.create_baseline("churn:7", dataset(tmp_path / "a.parquet", 10, 0))
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(InvalidDataset):
        client.monitors.create_baseline("churn:1", bad)
    assert client.models.show("churn:1").baseline is None


def test_cli_baselines_create(sklearn_model_file: Path, tmp_path: Path, settings: Settings) -> None:
    runner = CliRunner()
    upload = runner.invoke(app, ["models", "upload", str(sklearn_model_file), "--name", "churn"])
    assert upload.exit_code == 0, upload.output
    data = dataset(tmp_path / "train.parquet", 200, 0)

    shown = runner.invoke(app, ["baselines", "create", "churn:1", str(data)])
    assert shown.exit_code == 0, shown.output
    assert "train.parquet (200 rows, 4 columns) is the baseline of churn:1" in shown.stdout
    assert "tenure" in shown.stdout and "numeric" in shown.stdout

    as_json = runner.invoke(app, ["baselines", "create", "churn:1", str(data), "--json"])
    assert as_json.exit_code == 0, as_json.output
    found = json.loads(as_json.stdout)
    assert found["model"] == "churn:1" and found["profile"]["rows"] == 200

    missing = runner.invoke(app, ["baselines", "create", "ghost:1", str(data)])
    assert missing.exit_code != 0 and "ghost" in missing.output
