"""Shared fixtures: settings on a temporary CLOCHE_HOME, SQLite and PostgreSQL stores, models."""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cloche.config import Settings
from cloche.store.store import Store

PG_ADMIN_URL = os.environ.get(
    "CLOCHE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Free what in-process servers froze: Router.refresh calls gc.freeze(), and datasketches
    objects still frozen at interpreter exit are reported by nanobind as leaks, 600 lines."""
    gc.unfreeze()
    gc.collect()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test reads the developer's CLOCHE_* variables or writes to ./.cloche, and none leaves
    its umask behind: `cloche up` run in-process (a CliRunner test of a refused start) sets
    0o077 for good, and every file a later test wrote was then its owner's only (a container
    image built from them could not read its own entrypoint)."""
    for key in list(os.environ):
        if key.startswith("CLOCHE_") and key != "CLOCHE_TEST_PG_URL":
            monkeypatch.delenv(key)
    monkeypatch.setenv("CLOCHE_HOME", str(tmp_path / "home"))
    umask = os.umask(0o022)
    os.umask(umask)
    yield
    os.umask(umask)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    s = Store.open(settings)
    yield s
    s.close()


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL.replace("+psycopg", ""), connect_timeout=3):
            return True
    except Exception:
        return False


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    if not _pg_available():
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}; `make services` starts it")
    import psycopg

    name = f"cloche_test_{uuid.uuid4().hex[:12]}"
    admin = PG_ADMIN_URL.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The same store tests against SQLite and PostgreSQL."""
    if request.param == "sqlite":
        settings = Settings(home=tmp_path / "home")
    else:
        settings = Settings(home=tmp_path / "home", db_url=request.getfixturevalue("pg_url"))
    s = Store.open(settings)
    yield s
    s.close()


@pytest.fixture(scope="session")
def iris_like() -> tuple[np.ndarray, np.ndarray]:
    """200 rows, 4 features, 3 classes; deterministic."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)
    return X, y


@pytest.fixture
def sklearn_model_file(tmp_path: Path, iris_like: tuple[np.ndarray, np.ndarray]) -> Path:
    """A fitted scikit-learn classifier on a named DataFrame, saved with joblib."""
    import joblib
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    X, y = iris_like
    frame = pd.DataFrame(X, columns=["tenure", "spend", "visits", "age"])
    model = LogisticRegression(max_iter=500).fit(frame, y)
    path = tmp_path / "churn.joblib"
    joblib.dump(model, path)
    return path


@pytest.fixture
def sample_parquet(tmp_path: Path, iris_like: tuple[np.ndarray, np.ndarray]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    X, _ = iris_like
    table = pa.table({n: X[:, i] for i, n in enumerate(["tenure", "spend", "visits", "age"])})
    path = tmp_path / "train.parquet"
    pq.write_table(table, path)
    return path
