"""The Dockerfile `cloche export --with-wheels` writes, built and run with podman.

No image registry is reachable here, so the base image is Debian bookworm with python3 made by
debootstrap (cached in podman's store as BASE_IMAGE): it has neither pip nor venv, which the
Dockerfile must cope with. The image installs from the bundle's wheels with no index, then
serves a prediction on a published port, behind the token a bind beyond loopback requires.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cloche.auth.roles import LOCAL_USER
from cloche.export.service import export_model
from cloche.registry.inspection import inspect_here
from cloche.registry.upload import upload_model
from cloche.store.store import Store

pytestmark = pytest.mark.slow
BASE_IMAGE = "localhost/cloche-test-base:bookworm"
CONF = Path(__file__).with_name("containers.conf")
MIRROR = "http://deb.debian.org/debian"


def podman(*args: str, timeout: float = 600, check: bool = True) -> str:
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `bash scripts/services.sh` (make test does)")
    env = {**os.environ, "CONTAINERS_CONF": str(CONF)}
    done = subprocess.run(
        ["podman", "--runtime", "runc", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


@pytest.fixture(scope="session")
def base_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Debian bookworm minbase with python3, made once and kept in podman's image store."""
    if (
        subprocess.run(
            ["podman", "image", "exists", BASE_IMAGE],
            env={**os.environ, "CONTAINERS_CONF": str(CONF)},
        ).returncode
        == 0
    ):
        return BASE_IMAGE
    rootfs = tmp_path_factory.mktemp("rootfs")
    subprocess.run(
        ["debootstrap", "--variant=minbase", "--include=python3", "bookworm", str(rootfs), MIRROR],
        check=True,
        capture_output=True,
        timeout=900,
    )
    env = {**os.environ, "CONTAINERS_CONF": str(CONF)}
    # The with-block closes tar's pipe: an open one fails the session as a ResourceWarning.
    with subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE) as tar:
        subprocess.run(
            ["podman", "import", "-", BASE_IMAGE],
            stdin=tar.stdout,
            check=True,
            capture_output=True,
            env=env,
            timeout=300,
        )
    assert tar.returncode == 0
    return BASE_IMAGE


@pytest.fixture
def bundle(store: Store, sklearn_model_file: Path, tmp_path: Path) -> Path:
    upload_model(
        store, principal=LOCAL_USER, inspector=inspect_here, source=sklearn_model_file, name="churn"
    )
    out = tmp_path / "churn-edge"
    export_model(store, "churn:1", out, with_wheels=True)
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def image(base_image: str, bundle: Path) -> Iterator[str]:
    tag = f"localhost/cloche-edge-test:{uuid.uuid4().hex[:12]}"
    podman(
        "build",
        "-q",
        "--network",
        "none",
        "--build-arg",
        f"BASE={base_image}",
        "-t",
        tag,
        str(bundle),
    )
    yield tag
    podman("rmi", "-f", tag, check=False)


def test_the_bundle_dockerfile_builds_offline_and_serves_behind_a_token(image: str) -> None:
    port = free_port()
    container = podman(
        "run",
        "-d",
        "--rm",
        "-p",
        f"127.0.0.1:{port}:8080",
        "-e",
        "CLOCHE_EDGE_TOKEN=edge-secret",
        image,
    ).strip()
    try:
        url = f"http://127.0.0.1:{port}/v1/models/churn:predict"
        body = {"instances": [[0.5, -1.0, 2.0, 0.1]]}
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = httpx.post(
                    url, json=body, timeout=5, headers={"Authorization": "Bearer edge-secret"}
                )
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, podman("logs", container, check=False)
                time.sleep(0.2)
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"][0] in (0, 1, 2)
        assert httpx.post(url, json=body, timeout=5).status_code == 401
        # Not a trace of the training framework in the image: the model runs on onnxruntime.
        probe = podman(
            "exec",
            container,
            "python3",
            "-c",
            "import importlib.util as u; print(u.find_spec('sklearn'))",
        )
        assert probe.strip() == "None"
    finally:
        podman("rm", "-f", container, check=False)
