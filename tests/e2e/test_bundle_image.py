"""The Dockerfile `cloche export --with-wheels` writes, built and run with podman.

The base image is the debootstrap one of ``_podman.py``: python3, neither pip nor venv. The
image installs from the bundle's wheels with no index, then serves a prediction on a published
port, behind the token a bind beyond loopback requires.
"""

from __future__ import annotations

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
from tests.e2e._podman import base_image, build_offline, free_port, podman

pytestmark = pytest.mark.slow
__all__ = ["base_image"]  # a fixture: imported for pytest to find


@pytest.fixture
def bundle(store: Store, sklearn_model_file: Path, tmp_path: Path) -> Path:
    upload_model(
        store, principal=LOCAL_USER, inspector=inspect_here, source=sklearn_model_file, name="churn"
    )
    out = tmp_path / "churn-edge"
    export_model(store, "churn:1", out, with_wheels=True)
    return out


@pytest.fixture
def image(base_image: str, bundle: Path) -> Iterator[str]:
    tag = f"localhost/cloche-edge-test:{uuid.uuid4().hex[:12]}"
    build_offline(bundle, base=base_image, tag=tag)
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
