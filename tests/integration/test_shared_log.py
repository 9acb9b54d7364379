"""Two replicas on one PostgreSQL share one payload log, on a shared folder and on an S3 bucket
(a real S3 API: moto's server on loopback): `cloche logs`, shadow agreement, feedback and a
monitor run see both replicas' requests; a replica killed while the other keeps writing loses
nothing it compacted and corrupts nothing; a location the server cannot use stops `cloche up`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest

import cloche
from cloche.config import Settings
from cloche.errors import DestinationRefused, InvalidInput, Unavailable
from cloche.logs import service as logs
from cloche.logs.location import LogLocation
from cloche.logs.shared import check_shared_log
from cloche.monitoring import runs, service
from cloche.monitoring.entities import MonitorConfig
from cloche.monitoring.feedback import record_feedback
from cloche.store.layout import SharedLog
from cloche.store.store import Store
from tests.integration.conftest import LiveServer, run_server

pytestmark = pytest.mark.postgres
FEATURES = ["tenure", "spend", "visits", "age"]
ROW = [0.1, 0.2, 0.3, 0.4]
MOTO = Path(sys.executable).parent / "moto_server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    """A real S3 HTTP API on loopback (moto in server mode); its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [str(MOTO), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials as a deployment passes them: AWS_* variables, never in cloche's settings
    (the compaction children inherit them)."""
    for name, value in (("AWS_ACCESS_KEY_ID", "x"), ("AWS_SECRET_ACCESS_KEY", "x")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def make_bucket(endpoint: str, name: str) -> None:
    import s3fs

    s3fs.S3FileSystem(endpoint_url=endpoint, key="x", secret="x").mkdir(name)


@pytest.fixture(params=["folder", "s3"])
def shared(request: pytest.FixtureRequest, tmp_path: Path, aws_env: None) -> dict[str, Any]:
    """The `logs` settings of a shared folder, or of a fresh bucket on the moto server."""
    if request.param == "folder":
        return {"shared": str(tmp_path / "shared")}
    endpoint = request.getfixturevalue("moto")
    bucket = f"logs-{os.urandom(4).hex()}"
    make_bucket(endpoint, bucket)
    return {"shared": f"s3://{bucket}/cloche", "endpoint_url": endpoint}


def replica_settings(tmp_path: Path, pg_url: str, shared: dict[str, Any], name: str) -> Settings:
    return Settings(
        home=tmp_path / name,
        db_url=pg_url,
        store={"artifacts_url": str(tmp_path / "artifacts")},  # the shared artifact store
        logs={**shared, "replica": name, "publish_seconds": 1},
        egress={"allow": ["127.0.0.1"]},  # moto listens on loopback
        scheduler={"enabled": False},
    )


def deploy_churn(settings: Settings, model: Path, baseline: Path) -> None:
    with cloche.Client(settings=settings) as sdk:
        sdk.models.upload(model, name="churn", baseline=baseline)
        sdk.models.upload(model, name="churn")
        sdk.endpoints.create("churn")
        sdk.endpoints.deploy("churn", "churn:1")
        sdk.endpoints.deploy("churn", "churn:2", shadow=True)


def predict(server: LiveServer, rid: str) -> None:
    response = httpx.post(
        f"{server.url}/v1/models/churn:predict",
        json={"instances": [ROW]},
        headers={"X-Request-Id": rid},
    )
    assert response.status_code == 200, response.text


def wait_for(check: Callable[[], bool], what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def live_ids(settings: Settings) -> list[str]:
    store = Store.open(settings)
    try:
        table = logs.read_endpoint_log(store, endpoint="churn", since="1h", limit=10_000)
    finally:
        store.close()
    return sorted(r["request_id"] for r in table.to_pylist() if not r["shadow"])


@pytest.fixture
def replicas(
    tmp_path: Path,
    pg_url: str,
    shared: dict[str, Any],
    sklearn_model_file: Path,
    sample_parquet: Path,
) -> Iterator[tuple[LiveServer, LiveServer]]:
    a, b = (replica_settings(tmp_path, pg_url, shared, name) for name in ("a", "b"))
    deploy_churn(a, sklearn_model_file, sample_parquet)
    with ExitStack() as stack:
        yield stack.enter_context(run_server(a)), stack.enter_context(run_server(b))


def test_every_reader_sees_both_replicas_requests(
    replicas: tuple[LiveServer, LiveServer], shared: dict[str, Any], monkeypatch
) -> None:
    a, b = replicas
    for i in range(3):
        predict(a, f"a-{i}")
        predict(b, f"b-{i}")
    everyone = sorted([f"a-{i}" for i in range(3)] + [f"b-{i}" for i in range(3)])
    # Each replica reads its own rows at once; the other's once that one compacted them.
    wait_for(lambda: live_ids(a.settings) == everyone, "replica a to read b's rows")
    wait_for(lambda: live_ids(b.settings) == everyone, "replica b to read a's rows")

    # `cloche logs` on replica b's home, and the SDK over replica a's API.
    from typer.testing import CliRunner

    from cloche.cli.app import app

    env = {"CLOCHE_HOME": str(b.settings.home), "CLOCHE_DB_URL": str(b.settings.db_url)}
    env |= {f"CLOCHE_LOGS__{k.upper()}": str(v) for k, v in shared.items()}
    result = CliRunner().invoke(app, ["logs", "churn", "--since", "1h", "--json"], env=env)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert sorted(r["request_id"] for r in rows if not r["shadow"]) == everyone
    with cloche.Client(a.url, token=a.token) as sdk:
        (agreement,) = sdk.logs.shadow_agreement("churn")
    assert (agreement.shadow, agreement.compared, agreement.agreed) == ("churn:2", 6, 6)

    # Labels sent to replica a join the requests replica b answered, and the reverse.
    labels = [{"request_id": rid, "label": 0} for rid in everyone]
    store = Store.open(a.settings)
    try:
        result_a = record_feedback(store, "churn", labels[:3] + labels[3:])
        assert (result_a.accepted, result_a.unknown_request_ids) == (6, [])
        service.create_monitor(store, endpoint="churn", config=MonitorConfig(min_rows=1))
        run = runs.run_monitor(store, "churn", settings=a.settings)
    finally:
        store.close()
    assert run.rows == 6, run.message
    assert run.results["performance"]["labelled_rows"] == 6
    # Each replica wrote under its own id, beside the other's.
    location = LogLocation.shared(SharedLog(shared["shared"], shared.get("endpoint_url")))
    found = {f.path.split("/replica=")[1].split("/")[0] for f in location.files("churn")}
    assert found == {"a", "b"}


# On a folder only: what a kill can tear is a rename on a folder; an object PUT is whole or absent,
# and the S3 reading path is covered by the test above (this one takes a minute per location).
@pytest.mark.parametrize("shared", ["folder"], indirect=True)
def test_a_replica_killed_while_the_other_writes_keeps_its_compacted_rows(
    tmp_path: Path,
    pg_url: str,
    shared: dict[str, Any],
    sklearn_model_file: Path,
    sample_parquet: Path,
) -> None:
    a, b = (replica_settings(tmp_path, pg_url, shared, name) for name in ("a", "b"))
    deploy_churn(a, sklearn_model_file, sample_parquet)
    with run_server(b) as survivor, _cloche_up(a) as (doomed, proc):
        for i in range(5):
            predict(doomed, f"a-{i}")
            predict(survivor, f"b-{i}")
        compacted = sorted([f"a-{i}" for i in range(5)] + [f"b-{i}" for i in range(5)])
        wait_for(lambda: live_ids(b) == compacted, "a's rows in the shared log")
        for i in range(5, 10):
            predict(doomed, f"a-{i}")  # a's last rows: in its own segment when it dies
        os.killpg(proc.pid, signal.SIGKILL)  # the server and any compaction child it runs
        proc.wait()
        for i in range(5, 40):  # the survivor keeps writing
            predict(survivor, f"b-{i}")
        survivor_ids = [f"b-{i}" for i in range(40)]
        wait_for(lambda: set(survivor_ids) <= set(live_ids(b)), "the survivor's rows")
    seen = live_ids(b)
    assert set(compacted) <= set(seen)  # a's compacted rows are still read
    assert sorted(seen) == sorted(set(seen))  # and none twice
    location = LogLocation.shared(SharedLog(shared["shared"], shared.get("endpoint_url")))
    for data in location.files("churn"):  # nothing torn: every visible file reads whole
        assert location.read_table(data.path, ["request_id"], _ID_SCHEMA).num_rows > 0
    # a's uncompacted rows wait in its own folder; the compaction its restart runs first
    # brings them in, once.
    assert (
        logs.compact(
            logs.log_root(a.home), LogLocation.shared(SharedLog(**_shared_log(shared)), replica="a")
        )
        >= 5
    )
    assert sorted(live_ids(b)) == sorted(set(survivor_ids) | {f"a-{i}" for i in range(10)})


_ID_SCHEMA = pa.schema([("request_id", pa.string())])


def _shared_log(shared: dict[str, Any]) -> dict[str, Any]:
    return {"url": shared["shared"], "endpoint_url": shared.get("endpoint_url")}


@contextlib.contextmanager
def _cloche_up(settings: Settings) -> Iterator[tuple[LiveServer, subprocess.Popen[bytes]]]:
    """`cloche up` as its own process (and session), so that it can be killed."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOCHE_")}
    env |= {
        "CLOCHE_HOME": str(settings.home),
        "CLOCHE_DB_URL": str(settings.db_url),
        "CLOCHE_STORE__ARTIFACTS_URL": str(settings.store.artifacts_url),
        "CLOCHE_LOGS__SHARED": str(settings.logs.shared),
        "CLOCHE_LOGS__REPLICA": str(settings.logs.replica),
        "CLOCHE_LOGS__PUBLISH_SECONDS": "1",
        "CLOCHE_EGRESS__ALLOW": "127.0.0.1",
        "CLOCHE_SCHEDULER__ENABLED": "false",
    }
    if settings.logs.endpoint_url:
        env["CLOCHE_LOGS__ENDPOINT_URL"] = settings.logs.endpoint_url
    output = settings.home.parent / f"up-{settings.logs.replica}.log"
    with output.open("wb") as sink:  # a file, not a pipe: a full pipe would stall the server
        proc = subprocess.Popen(
            [sys.executable, "-m", "cloche", "up", "--port", str(port), "--workers", "1"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(output.read_text())
        try:
            return httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(ready, "cloche up to serve")
        yield LiveServer(url=url, settings=settings, token=""), proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --- a location the server cannot use stops it before it serves ------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("relative/folder", "neither an absolute folder nor an object-store URL"),
        ("https://logs.example.com/x", "not an object-store prefix"),
        ("simplecache::s3://bucket/x", "not an object-store prefix"),
        ("file:///srv/logs", "not an object-store prefix"),
    ],
)
def test_cloche_up_refuses_a_shared_log_that_is_no_folder_or_bucket(
    value: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from cloche.cli.app import app

    monkeypatch.setenv("CLOCHE_LOGS__SHARED", value)
    result = CliRunner().invoke(app, ["up", "--port", "0"])
    assert result.exit_code == 2, result.output
    assert "CLOCHE_LOGS__SHARED" in result.output and expected in result.output


def test_an_endpoint_url_needs_an_s3_shared_log(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="only for an s3:// shared log"):
        Settings(logs={"shared": str(tmp_path), "endpoint_url": "http://127.0.0.1:9"})


def test_a_missing_bucket_stops_cloche_up_naming_it(
    moto: str, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from cloche.cli.app import app

    monkeypatch.setenv("CLOCHE_LOGS__SHARED", "s3://no-such-bucket/cloche")
    monkeypatch.setenv("CLOCHE_LOGS__ENDPOINT_URL", moto)
    monkeypatch.setenv("CLOCHE_EGRESS__ALLOW", "127.0.0.1")
    result = CliRunner().invoke(app, ["up", "--port", "0"])
    assert result.exit_code == 2, result.output
    assert "no-such-bucket" in result.output and "does not exist" in result.output


def test_an_unreachable_storage_service_is_reported_as_unavailable(
    tmp_path: Path, aws_env: None
) -> None:
    settings = Settings(
        home=tmp_path / "home",
        logs={"shared": "s3://bucket/cloche", "endpoint_url": f"http://127.0.0.1:{free_port()}"},
        egress={"allow": ["127.0.0.1"]},
    )
    with pytest.raises(Unavailable, match="cannot reach the shared payload log") as caught:
        check_shared_log(settings)
    assert "CLOCHE_LOGS__ENDPOINT_URL" in (caught.value.hint or "")


def test_a_loopback_storage_service_needs_the_egress_allow_list(
    tmp_path: Path, moto: str, aws_env: None
) -> None:
    settings = Settings(
        home=tmp_path / "home", logs={"shared": "s3://bucket/cloche", "endpoint_url": moto}
    )
    with pytest.raises(DestinationRefused, match="CLOCHE_EGRESS__ALLOW"):
        check_shared_log(settings)


def test_a_shared_folder_the_server_cannot_write_is_refused(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        blocked = tmp_path / "file"  # root writes anywhere: a file where a folder must be
        blocked.write_text("not a folder")
    else:
        blocked = tmp_path / "ro"
        blocked.mkdir(mode=0o500)
    settings = Settings(home=tmp_path / "home", logs={"shared": str(blocked / "logs")})
    with pytest.raises((InvalidInput, Unavailable), match=str(blocked)):
        check_shared_log(settings)


def test_a_usable_location_is_recorded_with_the_replica_that_checked_it(
    tmp_path: Path,
) -> None:
    settings = Settings(
        home=tmp_path / "home", logs={"shared": str(tmp_path / "shared"), "replica": "r1"}
    )
    check_shared_log(settings)
    record = json.loads((tmp_path / "shared/payload-log/_replicas/r1.json").read_text())
    assert record["replica"] == "r1"


def test_retention_prunes_every_replicas_old_hours_and_keeps_the_recent(
    tmp_path: Path, shared: dict[str, Any]
) -> None:
    from datetime import UTC, datetime, timedelta

    import numpy as np

    from cloche.logs.retention import apply_retention
    from cloche.serving.payload_log import PayloadLog, encode_row

    now = datetime.now(UTC)
    place = SharedLog(**_shared_log(shared))
    for name in ("a", "b"):
        log = PayloadLog(tmp_path / name)
        for rid, at in ((f"{name}-old", now - timedelta(days=40)), (f"{name}-new", now)):
            log.write([encode_row((int(at.timestamp() * 1000), rid, "churn", "churn", 1, 1, False,
                                   200, 1.0, np.array([ROW]), None, None, "predict"))])  # fmt: skip
        log.close()
        assert logs.compact(tmp_path / name, LogLocation.shared(place, replica=name)) == 2
    removed = apply_retention(
        LogLocation.shared(place), max_age=timedelta(days=35), max_bytes=None, now=now
    )
    assert (removed.files, removed.rows) == (2, 2)
    left = logs.read_log(tmp_path / "a", "churn", shared=place)
    assert sorted(left["request_id"].to_pylist()) == ["a-new", "b-new"]
