"""`cloche up` as real processes: worker restarts, SIGTERM drains, shared state, live deploys.

Each test runs `cloche up` in a subprocess on its own CLOCHE_HOME (see ``_servers.py``) and
talks to it over loopback HTTP only, the way a user's clients and load balancer would.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

import cloche
from cloche.config import Settings
from tests.e2e._servers import cloche_up

pytestmark = pytest.mark.slow

ROW = {"instances": [[0.1, 0.2, 0.3, 0.4]]}
PREDICT = "/v1/models/churn:predict"
SLOW_MODEL = """
import time


def predict(X):
    time.sleep(0.5)
    return [7 for _ in X]
"""


@dataclass
class LoadReport:
    """What the client threads saw: HTTP statuses, transport errors, versions that answered."""

    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    versions: Counter[int] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, response: httpx.Response | None, error: Exception | None = None) -> None:
        with self.lock:
            if response is None:
                self.errors.append(f"{type(error).__name__}: {error}")
                return
            self.statuses[response.status_code] += 1
            if response.status_code == 200:
                self.versions[response.json()["version"]] += 1

    def ok(self) -> int:
        with self.lock:
            return self.statuses[200]

    def take_versions(self) -> Counter[int]:
        """The versions that answered since the last call."""
        with self.lock:
            taken, self.versions = self.versions, Counter()
            return taken


@contextmanager
def continuous_load(url: str, *, threads: int, limit_s: float = 60.0) -> Iterator[LoadReport]:
    """``threads`` clients sending predictions back to back until the block ends (or limit_s)."""
    report, stop = LoadReport(), threading.Event()

    def send() -> None:
        deadline = time.monotonic() + limit_s
        with httpx.Client(base_url=url, timeout=10) as http:
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    response = http.post(PREDICT, json=ROW)
                except httpx.TransportError as exc:
                    report.record(None, exc)
                    continue
                report.record(response)

    clients = [threading.Thread(target=send, daemon=True) for _ in range(threads)]
    for t in clients:
        t.start()
    try:
        yield report
    finally:
        stop.set()
        for t in clients:
            t.join(timeout=15)
    assert not any(t.is_alive() for t in clients), "a client thread did not stop"


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str) -> float:
    """Poll ``condition`` until true; the seconds it took. Fails the test past ``timeout``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - start


def deploy_churn(sdk: cloche.Client, model_file: Path) -> None:
    """Versions 1 and 2 of `churn` (the same model), endpoint `churn` serving version 1."""
    sdk.models.upload(model_file, name="churn")
    sdk.models.upload(model_file, name="churn")
    sdk.endpoints.create("churn")
    sdk.endpoints.deploy("churn", "churn:1")


def test_a_killed_worker_is_replaced_while_the_other_keeps_serving(
    settings: Settings, sklearn_model_file: Path
) -> None:
    with cloche.Client(settings=settings) as sdk:
        deploy_churn(sdk, sklearn_model_file)
    with cloche_up(settings.home, workers=2) as up:
        before = up.wait_for_workers(2, timeout=10)
        with continuous_load(up.url, threads=2) as report:
            wait_until(lambda: report.ok() >= 20, timeout=10, what="20 answers before the kill")
            victim = min(before)
            os.kill(victim, signal.SIGKILL)
            after = up.wait_for_workers(2, timeout=10, exclude={victim})
            served = report.ok()
            wait_until(lambda: report.ok() >= served + 50, timeout=10, what="answers after it")
    assert set(report.statuses) == {200}, report.statuses
    # Only a request in flight on the killed worker may fail, so at most one per client.
    assert len(report.errors) <= 2, report.errors
    assert after & before == before - {victim} and len(after - before) == 1


@pytest.fixture
def slow_endpoint(settings: Settings, tmp_path: Path) -> str:
    """Endpoint `slow`: a custom model whose predict takes 0.5 s and answers 7."""
    folder = tmp_path / "slow"
    folder.mkdir()
    (folder / "model.py").write_text(SLOW_MODEL)
    with cloche.Client(settings=settings) as sdk:
        sdk.models.upload(folder, name="slow")
        sdk.endpoints.create("slow")
        sdk.endpoints.deploy("slow", "slow:1")
    return "/v1/models/slow:predict"


DRAIN_S = 5.0


def _post_slow(url: str) -> httpx.Response | Exception:
    try:
        return httpx.post(url, json=ROW, timeout=15)
    except httpx.TransportError as exc:
        return exc


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(
    settings: Settings, slow_endpoint: str, workers: int
) -> None:
    env = {"CLOCHE_SERVING__DRAIN_SECONDS": str(DRAIN_S)}
    with cloche_up(settings.home, workers=workers, env=env) as up:
        url = up.url + slow_endpoint
        for _ in range(2 * workers):  # every worker has run the model once (the first is slow)
            assert httpx.post(url, json=ROW, timeout=15).status_code == 200
        with ThreadPoolExecutor(max_workers=1) as pool:
            in_flight = pool.submit(_post_slow, url)
            time.sleep(0.25)  # half-way through its predict
            stopped_at = time.monotonic()
            up.proc.send_signal(signal.SIGTERM)
            response = in_flight.result(timeout=15)
        code = up.proc.wait(timeout=DRAIN_S + 5)
        took = time.monotonic() - stopped_at
    assert isinstance(response, httpx.Response), f"the request in flight was dropped: {response!r}"
    assert response.status_code == 200 and response.json()["predictions"] == [7]
    assert code == 0, up.log()
    assert took < DRAIN_S


def test_sigterm_drops_no_request_sent_before_it(settings: Settings, slow_endpoint: str) -> None:
    env = {"CLOCHE_SERVING__DRAIN_SECONDS": str(DRAIN_S)}
    with cloche_up(settings.home, workers=1, env=env) as up:
        url = up.url + slow_endpoint
        assert httpx.post(url, json=ROW, timeout=15).status_code == 200
        with ThreadPoolExecutor(max_workers=3) as pool:
            sent = [pool.submit(_post_slow, url)]
            time.sleep(0.15)  # the model is busy with the first one...
            sent += [pool.submit(_post_slow, url) for _ in range(2)]
            time.sleep(0.1)  # ...when two more arrive, well before the SIGTERM
            up.proc.send_signal(signal.SIGTERM)
            outcomes = [f.result(timeout=15) for f in sent]
        code = up.proc.wait(timeout=DRAIN_S + 5)
    assert code == 0, up.log()
    assert [getattr(o, "status_code", repr(o)) for o in outcomes] == [200, 200, 200]


def _probe_ready(url: str) -> int | str:
    try:
        return httpx.get(f"{url}/v2/health/ready", timeout=2).status_code
    except httpx.TransportError as exc:
        return type(exc).__name__


def test_readiness_answers_503_while_requests_drain(settings: Settings, slow_endpoint: str) -> None:
    env = {"CLOCHE_SERVING__DRAIN_SECONDS": str(DRAIN_S)}
    with cloche_up(settings.home, workers=1, env=env) as up:
        url = up.url + slow_endpoint
        assert httpx.post(url, json=ROW, timeout=15).status_code == 200
        with ThreadPoolExecutor(max_workers=1) as pool:
            in_flight = pool.submit(_post_slow, url)
            time.sleep(0.1)
            up.proc.send_signal(signal.SIGTERM)
            probes = []
            while not in_flight.done() and len(probes) < 20:
                time.sleep(0.1)
                probes.append(_probe_ready(up.url))
            response = in_flight.result(timeout=15)
        assert up.proc.wait(timeout=DRAIN_S + 5) == 0
    assert getattr(response, "status_code", response) == 200
    assert probes and set(probes) == {503}, probes


def shared_state(tmp_path: Path, pg_url: str) -> dict[str, str]:
    """Settings for replicas sharing one PostgreSQL database and one artifact folder."""
    return {"CLOCHE_DB_URL": pg_url, "CLOCHE_STORE__ARTIFACTS_URL": str(tmp_path / "artifacts")}


@pytest.mark.postgres
def test_two_servers_on_one_database_serve_a_deploy_made_through_either(
    tmp_path: Path, pg_url: str, sklearn_model_file: Path
) -> None:
    shared = shared_state(tmp_path, pg_url)
    with (
        cloche_up(tmp_path / "a", env=shared) as a,
        cloche_up(tmp_path / "b", env=shared) as b,
        cloche.Client(a.url, home=a.home) as via_a,  # A's local token, from its home
        httpx.Client(base_url=b.url, timeout=10) as http_b,
    ):
        deploy_churn(via_a, sklearn_model_file)

        def b_serves(version: int) -> Callable[[], bool]:
            def check() -> bool:
                r = http_b.post(PREDICT, json=ROW)
                return r.status_code == 200 and r.json()["version"] == version

            return check

        # The first deploy also imports scikit-learn in B; the next one is the real measure.
        wait_until(b_serves(1), timeout=15, what="churn:1 deployed through A answering on B")
        via_a.endpoints.deploy("churn", "churn:2", traffic=100)
        wait_until(b_serves(2), timeout=2, what="churn:2 deployed through A answering on B")
        answers = Counter(http_b.post(PREDICT, json=ROW).json()["version"] for _ in range(20))
    assert answers == {2: 20}


def _waiting_on_locks(pg_url: str) -> int:
    import psycopg

    with psycopg.connect(pg_url.replace("+psycopg", ""), connect_timeout=5) as conn:
        row = conn.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()
        return int(row[0]) if row else 0


@pytest.mark.postgres
def test_a_replica_starting_while_another_migrates_waits_for_it(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alembic import command

    from cloche.store.db import open_database

    # Replica 1 (this process) runs the real migration and holds it open, uncommitted.
    real_upgrade, migrated, release = command.upgrade, threading.Event(), threading.Event()

    def upgrade_then_pause(*args: object, **kwargs: object) -> None:
        real_upgrade(*args, **kwargs)  # type: ignore[arg-type]
        migrated.set()
        release.wait(timeout=30)

    monkeypatch.setattr(command, "upgrade", upgrade_then_pause)
    first = threading.Thread(target=lambda: open_database(pg_url).dispose(), daemon=True)
    first.start()
    try:
        assert migrated.wait(timeout=30), "the first migration did not run"
        with cloche_up(tmp_path / "b", env=shared_state(tmp_path, pg_url), wait=False) as second:
            # Replica 2 starts meanwhile and gets as far as waiting on replica 1's locks.
            wait_until(lambda: _waiting_on_locks(pg_url) > 0, timeout=30, what="replica 2 waits")
            release.set()
            first.join(timeout=30)
            second.wait_ready()
    finally:
        release.set()
        first.join(timeout=30)


def test_deploy_and_traffic_changes_under_load_drop_nothing_across_workers(
    settings: Settings, sklearn_model_file: Path
) -> None:
    with cloche.Client(settings=settings) as sdk:
        deploy_churn(sdk, sklearn_model_file)
    with cloche_up(settings.home, workers=2) as up, cloche.Client(up.url) as api:
        up.wait_for_workers(2, timeout=10)
        with continuous_load(up.url, threads=4) as report:
            wait_until(lambda: report.ok() >= 20, timeout=10, what="20 answers before the deploy")
            api.endpoints.deploy("churn", "churn:2", traffic=50)
            report.take_versions()
            time.sleep(0.5)  # workers poll every 100 ms
            split = report.take_versions()
            api.endpoints.traffic("churn", {"churn:2": 100})
            time.sleep(0.5)
            api.endpoints.undeploy("churn", "churn:1")
            time.sleep(0.5)
            report.take_versions()
            served = report.ok()
            wait_until(lambda: report.ok() >= served + 50, timeout=10, what="answers after it")
            after = report.take_versions()
    assert report.errors == []
    assert set(report.statuses) == {200} and report.statuses[200] > 100, report.statuses
    assert split[1] > 0 and split[2] > 0, f"the 50/50 split did not reach the workers: {split}"
    assert set(after) == {2}, after
