"""Shared fixtures: settings on a temporary CLOCHE_HOME, SQLite and PostgreSQL stores, models."""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cloche.config import Settings
from cloche.store.store import Store

PG_ADMIN_URL = os.environ.get(
    "CLOCHE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


# Under `-n N --dist loadgroup` (make test), each test module runs whole on one xdist worker, so
# module-scoped servers and browsers start once, and these sets of modules share one worker:
# "podman" builds the `cloche up` image once per session (session fixtures are per worker) and
# its containers publish host ports; "ray" starts a local Ray (several processes, ports) per
# module; "browser" keeps to one Chromium at a time on two cores and one screenshots folder;
# "mkdocs" runs the docs build from the repository root.
SHARED_WORKER = {
    "e2e/test_bundle_image.py": "podman",
    "e2e/test_compose.py": "podman",
    "e2e/test_kubernetes.py": "podman",
    "e2e/test_up_image.py": "podman",
    "integration/test_pipeline_ray.py": "ray",
    "integration/test_batch_ray.py": "ray",
    "e2e/test_api_docs_offline.py": "browser",
    "e2e/test_browser_harness.py": "browser",
    "e2e/test_docs.py": "mkdocs",
    "e2e/test_docs_references.py": "mkdocs",
}
# The scheduler hands out groups in collection order: the longest first, so that none starts
# last and runs on alone; then end to end, integration, unit (many small modules fill the tail).
FIRST = ("podman", "browser", "mkdocs", "ray", "e2e/", "integration/", "unit/")


def xdist_group_of(module: str) -> str:
    """The worker group of a test module, given as its path under tests/."""
    if module.endswith("_browser.py"):
        return "browser"
    return SHARED_WORKER.get(module, module)


def _group_of_nodeid(nodeid: str) -> str:
    # A node id starts with the module's path from the root dir: tests/<module>::...
    return xdist_group_of(nodeid.split("::", 1)[0].removeprefix("tests/"))


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """loadgroup with our groups. Not xdist_group markers: with pytest 9, xdist 3.8 cannot add
    the group to a node id (it sets Node._nodeid, which pytest 9 no longer reads), so every
    marked test was scheduled on its own."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleGroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return _group_of_nodeid(nodeid)

    return ModuleGroupScheduling(config, log)


# A first session builds the podman images (the `cloche up` image from 190 MB of wheels, the
# compose stand-ins with apt), inside the first test's setup: past pytest-timeout's 300 s on a
# busy machine, and a failed session fixture is built anew, and fails, for each later test.
IMAGE_BUILD_TIMEOUT = 1200


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _group_of_nodeid(item.nodeid) == "podman" and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(IMAGE_BUILD_TIMEOUT))
    # xdist's workers see dist="no" and loadgroup=True; the controller collects nothing.
    if not getattr(config.option, "loadgroup", False):
        return

    def rank(item: pytest.Item) -> int:
        group = _group_of_nodeid(item.nodeid)
        return next((i for i, p in enumerate(FIRST) if group.startswith(p)), len(FIRST))

    items.sort(key=rank)  # stable: a module's tests stay together and in order


def pytest_configure(config: pytest.Config) -> None:
    # execnet starts xdist's workers with COLUMNS=80 and LINES=24, which a serial run has not:
    # Rich's Console reads COLUMNS once, when cloche.cli imports, so every CLI table of a
    # worker was cut to 80 columns, whatever width a test asked for.
    if hasattr(config, "workerinput"):
        os.environ.pop("COLUMNS", None)
        os.environ.pop("LINES", None)


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
