"""deploy/compose as a user runs it: PostgreSQL, two `cloche up` replicas, HAProxy in front.

Under load through the balancer, one replica is killed (SIGKILL), started again, and the other
stopped (SIGTERM, drained): no request fails, and the remaining replica serves each time.

podman-compose brings the project's own compose.yaml and haproxy.cfg up from a copy of
deploy/compose, with the database password in a generated .env as the docs say. The images
are the `cloche up` image of ``_podman.py`` and stand-ins for the public postgres and haproxy
images (no registry is reachable here), passed through the variables compose.yaml offers.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

import cloche
from tests.e2e._podman import (
    CONF,
    REPO,
    base_image,
    free_port,
    haproxy_image,
    podman,
    postgres_image,
    up_image,
    wheelhouse,
)

# The first session builds the stand-ins and the cloche image (minutes, counted in setup);
# after that the test itself takes about 1.5 min, bounded by its own waits.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
# fixtures: imported for pytest to find
__all__ = ["base_image", "haproxy_image", "postgres_image", "up_image", "wheelhouse"]

PREDICT = "/v1/models/churn:predict"
ROW = {"instances": [[0.5, -1.0, 2.0, 0.1]]}


@dataclass
class Stack:
    """A running compose project: the balancer's URL and how to reach each service."""

    project: str
    folder: Path
    url: str
    env: dict[str, str] = field(repr=False)

    def compose(self, *args: str, timeout: float = 180) -> str:
        done = subprocess.run(
            [
                sys.executable,  # podman-compose from the venv, wherever PATH points
                "-m",
                "podman_compose",
                "-p",
                self.project,
                "--podman-args=--runtime runc",
                *args,
            ],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, f"podman-compose {args} failed:\n{done.stderr[-3000:]}"
        return done.stdout

    def container(self, service: str) -> str:
        found = podman(
            "ps",
            "-a",
            "-q",
            "--filter",
            f"label=com.docker.compose.project={self.project}",
            "--filter",
            f"label=com.docker.compose.service={service}",
        ).split()
        assert len(found) == 1, f"{service}: {found}"
        return found[0]

    def inside(self, service: str, url_path: str, token: str = "") -> str:
        """GET ``url_path`` from the replica's own port, from within its container."""
        script = (
            "import sys, urllib.request as u\n"
            "h = {'Authorization': 'Bearer ' + sys.argv[2]} if sys.argv[2] else {}\n"
            "q = u.Request('http://127.0.0.1:8080' + sys.argv[1], headers=h)\n"
            "r = u.urlopen(q, timeout=5)\n"
            "print(r.read().decode())\n"
        )
        return podman("exec", self.container(service), "python3", "-c", script, url_path, token)


@pytest.fixture
def stack(
    up_image: str, postgres_image: str, haproxy_image: str, tmp_path: Path
) -> Iterator[Stack]:
    folder = tmp_path / "compose"
    shutil.copytree(REPO / "deploy" / "compose", folder)
    # As docs/operations/compose.md has the user do it: the password only in .env.
    (folder / ".env").write_text(f"CLOCHE_DB_PASSWORD={secrets.token_hex(16)}\n")
    env = {
        **os.environ,
        "CONTAINERS_CONF": str(CONF),
        "CLOCHE_IMAGE": up_image,
        "CLOCHE_DB_IMAGE": postgres_image,
        "CLOCHE_LB_IMAGE": haproxy_image,
        "CLOCHE_PORT": str(free_port()),
    }
    running = Stack(
        f"cloche-compose-{uuid.uuid4().hex[:8]}",
        folder,
        f"http://127.0.0.1:{env['CLOCHE_PORT']}",
        env,
    )
    try:
        running.compose("up", "-d")
        yield running
    finally:
        tear_down(running)


def tear_down(stack: Stack) -> None:
    """Remove the project's containers and volumes, best effort and bounded in time.

    A podman that hangs while cleaning up (seen once in CI: `volume rm` stuck for 10 min)
    leaves a project behind under its own unique name; it must not fail or stall the run.
    """
    steps: list[Callable[[], object]] = [
        lambda: stack.compose("down", "-v", "-t", "5", timeout=120),
        lambda: [
            podman("volume", "rm", "-f", volume, check=False, timeout=60)
            for volume in podman(
                "volume",
                "ls",
                "-q",
                "--filter",
                f"label=io.podman.compose.project={stack.project}",
                timeout=60,
            ).split()
        ],
    ]
    for step in steps:
        try:
            step()
        except (AssertionError, subprocess.TimeoutExpired) as exc:
            warnings.warn(f"cleaning up {stack.project}: {exc}", stacklevel=1)


def wait_for(check: Callable[[], object], what: str, stack: Stack, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (AssertionError, httpx.HTTPError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{diagnosis(stack)}")
        time.sleep(0.5)


def diagnosis(stack: Stack) -> str:
    """Each service's state and last log lines, stderr included (where cloche and
    PostgreSQL write)."""
    parts = [
        podman(
            "ps",
            "-a",
            "--filter",
            f"label=com.docker.compose.project={stack.project}",
            "--format",
            "{{.Names}} {{.Status}}",
            check=False,
            timeout=60,
        )
    ]
    for service in ("db", "cloche-1", "cloche-2", "lb"):
        done = subprocess.run(
            ["podman", "--runtime", "runc", "logs", "--tail", "30", stack.container(service)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "CONTAINERS_CONF": str(CONF)},
        )
        parts.append(f"--- {service} ---\n{done.stdout}{done.stderr}")
    return "\n".join(parts)


def served(stack: Stack, service: str, token: str) -> int:
    """Predictions the replica answered with 200, from its own /metrics."""
    text = stack.inside(service, "/metrics", token)
    return sum(
        int(float(m.group(1)))
        for m in re.finditer(r'^cloche_requests_total\{[^}]*status="200"\} (\S+)$', text, re.M)
    )


def load_through(stack: Stack, auth: dict[str, str], meanwhile: Callable[[], object]) -> set[str]:
    """Predictions through the balancer from 4 threads; ``meanwhile()`` after the 100th.

    The load goes on for 3 s after ``meanwhile`` returned (the balancer notices a dead or
    draining replica within 2 s) and to 600 requests at least. Asserts that every request
    answered 200 and that enough came after ``meanwhile`` to tell.
    """
    total, trigger, after_s = 600, 100, 3.0
    results: list[tuple[float, int | str]] = []
    replicas: list[tuple[float, str]] = []  # who answered, by the balancer's header
    lock = threading.Lock()
    started = threading.Event()
    done_at = float("inf")

    def client() -> None:
        with httpx.Client(base_url=stack.url, headers=auth, timeout=30) as http:
            while True:
                with lock:
                    if len(results) >= total and time.monotonic() > done_at + after_s:
                        return
                    if len(results) >= trigger:
                        started.set()
                replica = ""
                try:
                    answer = http.post(PREDICT, json=ROW)
                    outcome: int | str = answer.status_code
                    replica = answer.headers.get("x-cloche-replica", "")
                except httpx.HTTPError as exc:
                    outcome = repr(exc)
                with lock:
                    results.append((time.monotonic(), outcome))
                    replicas.append((time.monotonic(), replica))

    with ThreadPoolExecutor(4) as pool:
        clients = [pool.submit(client) for _ in range(4)]
        assert started.wait(60), "the load never got going"
        meanwhile()
        done_at = time.monotonic()
        for done in clients:
            done.result(timeout=120)

    failed = [outcome for _, outcome in results if outcome != 200]
    assert failed == [], f"{len(failed)} of {len(results)} failed: {failed[:5]}"
    after = sum(1 for at, _ in results if at > done_at)
    assert after >= 100, f"only {after} requests after the event: too few to tell"
    return {replica for at, replica in replicas if at > done_at}


def test_replicas_behind_the_balancer_lose_no_request_when_one_is_killed_or_stopped(
    stack: Stack, sklearn_model_file: Path
) -> None:
    wait_for(lambda: stack.inside("cloche-1", "/v2/health/ready") is not None, "cloche-1", stack)
    wait_for(lambda: stack.inside("cloche-2", "/v2/health/ready") is not None, "cloche-2", stack)
    # Tokens live in the shared database (hashed): replica 1's admin token works on both.
    token = podman("exec", stack.container("cloche-1"), "cloche", "tokens", "local").strip()
    auth = {"Authorization": f"Bearer {token}"}
    with cloche.Client(url=stack.url, token=token) as sdk:
        sdk.models.upload(sklearn_model_file, name="churn")
        sdk.endpoints.create("churn")
        sdk.endpoints.deploy("churn", "churn:1")

    with httpx.Client(base_url=stack.url, headers=auth, timeout=30) as http:
        streak = 0

        def both_serve() -> bool:
            # Both replicas pick the deployment up on their next sync; balanced requests
            # answering 200 many times in a row means both have.
            nonlocal streak
            streak = streak + 1 if http.post(PREDICT, json=ROW).status_code == 200 else 0
            return streak >= 20

        wait_for(both_serve, "churn deployed on both replicas", stack, timeout=60)
        assert http.get("/api/v1/models").status_code == 200
        assert httpx.post(f"{stack.url}{PREDICT}", json=ROW).status_code == 401

    # Both replicas answered the warm-up (round the balancer); replica 1's token works on 2.
    assert all(served(stack, s, token) > 0 for s in ("cloche-1", "cloche-2"))

    # SIGKILL: no drain; requests in flight on replica 1 die with it and are replayed.
    survivor: dict[str, int] = {}

    def kill_replica_1() -> None:
        podman("kill", stack.container("cloche-1"))
        survivor["at kill"] = served(stack, "cloche-2", token)

    assert load_through(stack, auth, kill_replica_1) == {"cloche-2"}
    assert served(stack, "cloche-2", token) > survivor["at kill"]

    # Replica 1 comes back and the balancer sends it traffic again once it is ready.
    podman("start", stack.container("cloche-1"))
    wait_for(lambda: stack.inside("cloche-1", "/v2/health/ready") is not None, "restart", stack)
    # Watched by the balancer's X-Cloche-Replica header, not the replica's /metrics: the
    # restarted container's workers may get the pids of the killed ones, whose saved totals
    # they then replace with their own, lower ones.
    with httpx.Client(base_url=stack.url, headers=auth, timeout=30) as http:

        def rejoined() -> bool:
            answer = http.post(PREDICT, json=ROW)
            assert answer.status_code == 200
            return answer.headers.get("x-cloche-replica") == "cloche-1"

        # Within seconds normally; HAProxy may hold a name that failed to resolve for a while.
        wait_for(rejoined, "replica 1 back in the pool", stack, timeout=90)

    # `podman stop` sends SIGTERM (as orchestrators do) and waits: replica 2 answers
    # not-ready, the balancer takes it out, it finishes what it holds and exits; no request
    # fails. (After a bare SIGTERM, the restart policy would start it again.)
    stopping, stop = ThreadPoolExecutor(1), []

    def stop_replica_2() -> None:
        stop.append(stopping.submit(podman, "stop", "-t", "30", stack.container("cloche-2")))

    with stopping:
        answered_after = load_through(stack, auth, stop_replica_2)
        stop[0].result(timeout=60)
    assert "cloche-1" in answered_after
    state = podman(
        "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", stack.container("cloche-2")
    )
    assert state.split() == ["exited", "0"], state
