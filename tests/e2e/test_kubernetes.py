"""deploy/kubernetes brought up by `podman kube play`: two replicas, one store, a prediction each.

The test plays a copy of what `kubectl apply -k deploy/kubernetes` applies, changed only where
podman 4.3 (Debian 12's) differs from Kubernetes:

- The store: the Secret's URL names SQLite on the shared volume (the PersistentVolumeClaim
  becomes a podman named volume that both pods mount at /shared), not PostgreSQL: the image
  has no PostgreSQL driver yet, and the host's PostgreSQL listens on loopback, which pods on
  podman's bridge cannot reach. The artifacts go to /shared/artifacts as in the manifests.
- The Secret: podman's ``secretKeyRef`` reads a podman secret holding JSON ``{key: base64}``
  (a Secret that kube play stores is YAML, which it then fails to parse), so the test creates
  that secret from secret.yaml's keys.
- Ports: every replica publishes a ``containerPort`` on the host's 0.0.0.0 (the second fails:
  address in use), so the copy has none and the test reaches each pod at its own IP on
  podman's kube network, as a Service would reach its endpoints.
- ``emptyDir``: podman makes it one named volume shared by every replica. /tmp may be shared,
  so it stays (renamed for this run); /data, each pod's own home, is dropped and becomes the
  image's anonymous VOLUME, one per pod.
- One serving worker per pod (the manifests' two, times two replicas, on a two-core machine).

What podman ignores, the test does itself: it polls each pod's readiness route (podman drops
readinessProbe, and turns livenessProbe into a healthcheck that needs curl and never runs
without systemd). Service and PodDisruptionBudget are accepted and ignored; every manifest is
checked against the Kubernetes schemas in tests/unit/deploy/test_kubernetes_manifests.py.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import joblib
import pandas as pd
import pytest
import yaml

import cloche
from tests.e2e._podman import REPO, base_image, podman, up_image, wheelhouse

pytestmark = pytest.mark.slow
__all__ = ["base_image", "up_image", "wheelhouse"]  # fixtures: imported for pytest to find

MANIFESTS = REPO / "deploy" / "kubernetes"
SQLITE_URL = "sqlite:////shared/cloche.db"
REPLICAS = 2
READY_SECONDS = 60
FEATURES = ["tenure", "spend", "visits", "age"]


def applied_manifests() -> list[dict[str, Any]]:
    """What `kubectl apply -k deploy/kubernetes` applies, in the kustomization's order."""
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    return [yaml.safe_load((MANIFESTS / name).read_text()) for name in kustomization["resources"]]


@dataclass(frozen=True)
class Play:
    """A test-time copy of the manifests, named apart from any other run's."""

    file: Path
    deployment: str
    secret: str
    secret_json: str  # what podman's secretKeyRef reads
    volumes: tuple[str, ...]  # named volumes kube play makes (the claim, the shared /tmp)

    def pods(self) -> list[str]:
        return [f"{self.deployment}-pod-{i}" for i in range(REPLICAS)]


def podman_copy(image: str, folder: Path) -> Play:
    run = uuid.uuid4().hex[:8]
    docs = applied_manifests()
    (deployment,) = (d for d in docs if d["kind"] == "Deployment")
    (claim,) = (d for d in docs if d["kind"] == "PersistentVolumeClaim")
    secret_doc = yaml.safe_load((MANIFESTS / "secret.yaml").read_text())
    for doc in docs:
        doc["metadata"]["name"] = f"{doc['metadata']['name']}-{run}"

    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deployment["spec"]["replicas"] == REPLICAS
    container["image"] = image
    container.pop("ports")
    env = {e["name"]: e for e in container["env"]}
    env["CLOCHE_SERVING__WORKERS"]["value"] = "1"
    ref = env["CLOCHE_DB_URL"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == secret_doc["metadata"]["name"]
    assert ref["key"] in secret_doc["stringData"]
    ref["name"] = secret = f"{ref['name']}-{run}"
    secret_json = json.dumps({ref["key"]: base64.b64encode(SQLITE_URL.encode()).decode()})

    kept, volumes = [], [claim["metadata"]["name"]]
    for volume in pod["volumes"]:
        if "persistentVolumeClaim" in volume:
            volume["persistentVolumeClaim"]["claimName"] = claim["metadata"]["name"]
        elif volume["name"] == "home":
            continue  # per pod: the image's anonymous /data volume stands in
        else:
            old = volume["name"]
            volume["name"] = f"{old}-{run}"
            for mount in container["volumeMounts"]:
                if mount["name"] == old:
                    mount["name"] = volume["name"]
            volumes.append(volume["name"])
        kept.append(volume)
    pod["volumes"] = kept
    container["volumeMounts"] = [m for m in container["volumeMounts"] if m["name"] != "home"]

    file = folder / "cloche-kube.yaml"
    file.write_text(yaml.safe_dump_all(docs))
    return Play(file, deployment["metadata"]["name"], secret, secret_json, tuple(volumes))


@pytest.fixture
def played(up_image: str, tmp_path: Path) -> Iterator[tuple[Play, list[str]]]:
    """The copy played: its pods' URLs on podman's network, once the pods exist."""
    play = podman_copy(up_image, tmp_path)
    secret_file = tmp_path / "secret.json"
    secret_file.write_text(play.secret_json)
    try:
        podman("secret", "create", play.secret, str(secret_file), timeout=30)
        podman("kube", "play", str(play.file), timeout=120)
        urls = []
        for pod in play.pods():
            ip = podman(
                "inspect",
                f"{pod}-cloche",
                "--format",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                timeout=30,
            ).strip()
            assert ip, f"{pod} has no address on podman's network"
            urls.append(f"http://{ip}:8080")
        yield play, urls
    finally:
        podman("kube", "down", str(play.file), timeout=120, check=False)
        podman("secret", "rm", play.secret, timeout=30, check=False)
        podman("volume", "rm", "-f", *play.volumes, timeout=60, check=False)


def wait_ready(play: Play, urls: list[str]) -> None:
    """What the readinessProbe would do: GET /v2/health/ready until each pod answers 200."""
    deadline = time.monotonic() + READY_SECONDS
    for pod, url in zip(play.pods(), urls, strict=True):
        while True:
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=3).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, podman("logs", f"{pod}-cloche", check=False)
            time.sleep(0.3)


def test_both_replicas_of_the_kubernetes_deployment_serve_one_store_under_podman(
    played: tuple[Play, list[str]], sklearn_model_file: Path, iris_like: Any
) -> None:
    play, urls = played
    wait_ready(play, urls)
    first, second = (f"{pod}-cloche" for pod in play.pods())
    # The pod's securityContext reached the container: unprivileged, read-only root.
    assert podman("exec", first, "id", "-u").strip() == "10001"
    assert "Read-only file system" in podman("exec", first, "sh", "-c", "touch /x 2>&1 || true")
    # Each pod has its own home, hence its own local admin token, in the one shared database:
    # the model goes in through the first pod and each pod is asked with the other's token.
    tokens = [podman("exec", c, "cloche", "tokens", "local").strip() for c in (first, second)]
    assert tokens[0] != tokens[1]

    with cloche.Client(url=urls[0], token=tokens[0]) as sdk:
        sdk.models.upload(sklearn_model_file, name="churn")
        sdk.endpoints.create("churn")
        sdk.endpoints.deploy("churn", "churn:1")

    rows = iris_like[0][:3]
    expected = joblib.load(sklearn_model_file).predict(pd.DataFrame(rows, columns=FEATURES))
    for url, token in zip(urls, reversed(tokens), strict=True):
        answer = predict_when_deployed(url, token, rows.tolist())
        assert answer["predictions"] == expected.tolist(), url
        assert (answer["model"], answer["version"]) == ("churn", 1)
        # Bound beyond loopback: predictions want a token too.
        bare = httpx.post(f"{url}/v1/models/churn:predict", json={"instances": []}, timeout=10)
        assert bare.status_code == 401


def predict_when_deployed(url: str, token: str, instances: list[list[float]]) -> dict[str, Any]:
    """A replica picks a deployment up on its next poll of the store: 404 until then (its
    first scikit-learn model also pays the import, slow on a loaded two-core machine)."""
    deadline = time.monotonic() + 60
    while True:
        answer = httpx.post(
            f"{url}/v1/models/churn:predict",
            json={"instances": instances},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        if answer.status_code != 404 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body
