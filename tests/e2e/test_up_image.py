"""deploy/Dockerfile, the `cloche up` image, built offline with podman and used over its port.

The wheelhouse comes from the package index on the host (deploy/wheelhouse.sh), cached across
runs by the lock's sha256; the build itself has no network, on the debootstrap base of
``_podman.py`` (python3, neither pip nor venv). The container binds 0.0.0.0, so every request,
predictions included, needs a token: the admin one `cloche up` wrote into the data volume.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import cloche
from tests.e2e._podman import base_image, free_port, podman, up_image, wheelhouse

pytestmark = pytest.mark.slow
__all__ = ["base_image", "up_image", "wheelhouse"]  # fixtures: imported for pytest to find


@pytest.fixture
def running(up_image: str) -> Iterator[tuple[str, str]]:
    """The container's id and its published loopback URL, its /data on a fresh volume."""
    port, volume = free_port(), f"cloche-up-test-{uuid.uuid4().hex[:12]}"
    container = ""
    try:
        container = podman(
            "run", "-d", "-p", f"127.0.0.1:{port}:8080", "-v", f"{volume}:/data", up_image
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
