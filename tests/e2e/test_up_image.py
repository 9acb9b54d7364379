"""deploy/Dockerfile, the `cloche up` image, built offline with podman and used over its port.

The wheelhouse comes from the package index on the host (deploy/wheelhouse.sh), cached across
runs by the lock's sha256; the build itself has no network, on the debootstrap base of
``_podman.py`` (python3, neither pip nor venv). The container binds 0.0.0.0, so every request,
predictions included, needs a token: the admin one `cloche up` wrote into the data volume.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import cloche
from cloche.export.downloads import pip_command
from tests.e2e._podman import base_image, build_offline, free_port, podman

pytestmark = pytest.mark.slow
__all__ = ["base_image"]  # a fixture: imported for pytest to find

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements" / "demo.txt"


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    """The lock's wheels (about 185 MB, downloaded once per lock) and a fresh cloche wheel."""
    key = hashlib.sha256(LOCK.read_bytes()).hexdigest()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    dest = cache / "cloche-test-wheels" / key
    # The venv may have no pip (uv makes it); the script needs a python that has one.
    python = pip_command()[0]
    subprocess.run(
        ["bash", str(REPO / "deploy" / "wheelhouse.sh"), str(dest)],
        check=True,
        capture_output=True,
        timeout=1200,
        env={**os.environ, "PYTHON": python},
    )
    return dest


@pytest.fixture
def image(base_image: str, wheelhouse: Path, tmp_path: Path) -> Iterator[str]:
    # A context laid out like the repository, holding only what .dockerignore lets through;
    # hard links spare copying the wheels when the cache shares the file system.
    context = tmp_path / "context"
    (context / "requirements").mkdir(parents=True)
    shutil.copy(LOCK, context / "requirements" / "demo.txt")
    shutil.copytree(REPO / "deploy", context / "deploy", ignore=shutil.ignore_patterns("wheels"))
    shutil.copy(REPO / ".dockerignore", context / ".dockerignore")
    try:
        shutil.copytree(wheelhouse, context / "deploy" / "wheels", copy_function=os.link)
    except OSError:
        shutil.rmtree(context / "deploy" / "wheels", ignore_errors=True)
        shutil.copytree(wheelhouse, context / "deploy" / "wheels")
    tag = f"localhost/cloche-up-test:{uuid.uuid4().hex[:12]}"
    try:
        build_offline(
            context, base=base_image, tag=tag, dockerfile=context / "deploy" / "Dockerfile"
        )
        yield tag
    finally:
        podman("rmi", "-f", tag, check=False)


@pytest.fixture
def running(image: str) -> Iterator[tuple[str, str]]:
    """The container's id and its published loopback URL, its /data on a fresh volume."""
    port, volume = free_port(), f"cloche-up-test-{uuid.uuid4().hex[:12]}"
    container = ""
    try:
        container = podman(
            "run", "-d", "-p", f"127.0.0.1:{port}:8080", "-v", f"{volume}:/data", image
        ).strip()
        yield container, f"http://127.0.0.1:{port}"
    finally:
        if container:
            podman("rm", "-f", container, check=False)
        podman("volume", "rm", "-f", volume, check=False)


def wait_ready(container: str, url: str) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, podman("logs", container, check=False)
        time.sleep(0.3)


def test_the_up_image_serves_a_deployed_model_behind_tokens_as_a_non_root_user(
    running: tuple[str, str], sklearn_model_file: Path
) -> None:
    container, url = running
    wait_ready(container, url)
    assert podman("exec", container, "id", "-u").strip() != "0"
    token = podman("exec", container, "cloche", "tokens", "local").strip()
    assert httpx.get(f"{url}/api/v1/models", timeout=10).status_code == 401

    with cloche.Client(url=url, token=token) as sdk:
        sdk.models.upload(sklearn_model_file, name="churn")
        sdk.endpoints.create("churn")
        sdk.endpoints.deploy("churn", "churn:1")

    predict = f"{url}/v1/models/churn:predict"
    body = {"instances": [[0.5, -1.0, 2.0, 0.1]]}
    # The workers pick a new deployment up on their next sync: 404 until then.
    deadline = time.monotonic() + 60
    while True:
        answer = httpx.post(
            predict, json=body, timeout=30, headers={"Authorization": f"Bearer {token}"}
        )
        if answer.status_code != 404 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"][0] in (0, 1, 2)
    # Bound beyond loopback: the data plane wants a token as well.
    assert httpx.post(predict, json=body, timeout=10).status_code == 401
    # The model, metadata and token live on the volume, owned by the unprivileged user.
    listing = podman("exec", container, "ls", "/data")
    assert "local-token" in listing
