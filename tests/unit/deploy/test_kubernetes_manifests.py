"""deploy/kubernetes against the Kubernetes schemas and against cloche itself.

kubernetes-validate checks each manifest against the OpenAPI schemas of one Kubernetes version,
strictly (an unknown or misplaced field fails, as `kubectl apply --validate=strict` would). The
rest checks what no schema knows: that the probes name routes a real cloche server answers
without a token, that ports, selectors, the Secret and the claim agree across the files, that
every CLOCHE_* variable names a real setting, and that the grace period covers cloche's drain.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel

from cloche.config import ServingSettings, Settings
from cloche.server import STOP_GRACE_S
from tests.integration.conftest import run_server

REPO = Path(__file__).resolve().parents[3]
MANIFESTS = REPO / "deploy" / "kubernetes"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
# A fixed version: the schemas a manifest is held to change only when this line does.
KUBERNETES_VERSION = "1.33.0"
FILES = sorted(p.name for p in MANIFESTS.glob("*.yaml") if p.name != "kustomization.yaml")


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((MANIFESTS / name).read_text())
    return doc


def of_kind(kind: str) -> dict[str, Any]:
    (doc,) = (d for d in map(load, FILES) if d["kind"] == kind)
    return doc


def container() -> dict[str, Any]:
    (only,) = of_kind("Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(only)


def probes() -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        yield kind, container()[kind]["httpGet"]


def env() -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container()["env"]}


@pytest.mark.parametrize("name", FILES)
def test_each_manifest_is_valid_for_kubernetes_strictly(name: str) -> None:
    kubernetes_validate.validate(load(name), KUBERNETES_VERSION, strict=True)


def test_an_unknown_or_misplaced_field_fails_validation() -> None:
    typo = load("deployment.yaml")
    typo["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pth"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError, match="pth"):
        kubernetes_validate.validate(typo, KUBERNETES_VERSION, strict=True)
    misplaced = load("pdb.yaml")
    misplaced["minAvailable"] = misplaced["spec"].pop("minAvailable")
    with pytest.raises(kubernetes_validate.ValidationError, match="minAvailable"):
        kubernetes_validate.validate(misplaced, KUBERNETES_VERSION, strict=True)


def test_the_kustomization_applies_every_manifest_but_the_secret_template() -> None:
    resources = load("kustomization.yaml")["resources"]
    assert sorted(resources) == [f for f in FILES if f != "secret.yaml"]


def test_the_probes_name_routes_a_cloche_server_answers_without_a_token(tmp_path: Path) -> None:
    # A real server, tokens required as in the image (it binds 0.0.0.0): the kubelet sends none.
    settings = Settings(home=tmp_path / "home", auth={"required": True})
    with run_server(settings) as server:
        for kind, get in probes():
            answer = httpx.get(server.url + get["path"], timeout=10)
            assert answer.status_code == 200, (kind, answer.text)
        # Readiness is the route that turns 503 while draining; liveness never does.
        assert container()["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
        assert {container()[k]["httpGet"]["path"] for k in ("startupProbe", "livenessProbe")} == {
            "/v2/health/live"
        }
        assert httpx.get(server.url + "/api/v1/models", timeout=10).status_code == 401


def test_ports_agree_between_the_image_probes_and_service() -> None:
    image_port = re.search(r"CLOCHE_SERVER__PORT=(\d+)", DOCKERFILE.read_text())
    assert image_port is not None
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert list(ports.values()) == [int(image_port.group(1))]
    assert "CLOCHE_SERVER__PORT" not in env()  # the image's port, not a second source of it
    for _, get in probes():
        assert get["port"] in ports
    (service_port,) = of_kind("Service")["spec"]["ports"]
    assert service_port["targetPort"] in ports


def test_selectors_match_the_pods_of_the_deployment() -> None:
    deployment = of_kind("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in (
        deployment["spec"]["selector"]["matchLabels"],
        of_kind("Service")["spec"]["selector"],
        of_kind("PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= labels.items()
    assert of_kind("PodDisruptionBudget")["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_the_database_url_comes_from_the_secret_template_and_the_artifacts_from_the_claim() -> None:
    ref = env()["CLOCHE_DB_URL"]["valueFrom"]["secretKeyRef"]
    secret = of_kind("Secret")
    assert ref["name"] == secret["metadata"]["name"]
    assert "CHANGE-ME" in secret["stringData"][ref["key"]]  # a placeholder, never a real one
    spec = of_kind("Deployment")["spec"]["template"]["spec"]
    (shared,) = (v for v in spec["volumes"] if "persistentVolumeClaim" in v)
    claim = of_kind("PersistentVolumeClaim")
    assert shared["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    (mount,) = (m for m in container()["volumeMounts"] if m["name"] == shared["name"])
    assert env()["CLOCHE_STORE__ARTIFACTS_URL"]["value"].startswith(mount["mountPath"] + "/")


def test_every_cloche_variable_names_a_real_setting_and_parses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Settings ignores unknown variables, so a misspelt one would be silently dropped.
    for name, entry in env().items():
        path = name.removeprefix("CLOCHE_").lower().split("__")
        model: type[BaseModel] = Settings
        for part in path[:-1]:
            assert part in model.model_fields, name
            section = model.model_fields[part].annotation
            assert isinstance(section, type) and issubclass(section, BaseModel), name
            model = section
        assert path[-1] in model.model_fields, name
        if "value" in entry:
            monkeypatch.setenv(name, entry["value"])
    settings = Settings()
    assert settings.serving.workers == int(env()["CLOCHE_SERVING__WORKERS"]["value"])
    assert settings.artifacts_url == env()["CLOCHE_STORE__ARTIFACTS_URL"]["value"]


def test_the_grace_period_covers_the_pre_stop_wait_and_cloches_drain() -> None:
    spec = of_kind("Deployment")["spec"]["template"]["spec"]
    pre_stop = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    drain = ServingSettings(drain_seconds=env()["CLOCHE_SERVING__DRAIN_SECONDS"]["value"])
    needed = float(pre_stop[1]) + STOP_GRACE_S + drain.drain_seconds
    assert spec["terminationGracePeriodSeconds"] > needed


def test_the_pod_runs_as_the_images_user_on_a_read_only_root() -> None:
    uid = re.search(r"useradd [^;]*--uid (\d+)", DOCKERFILE.read_text())
    assert uid is not None
    pod = of_kind("Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == int(uid.group(1))
    assert container()["securityContext"]["readOnlyRootFilesystem"] is True
    writable = {m["mountPath"] for m in container()["volumeMounts"]}
    assert {"/data", "/tmp"} <= writable  # CLOCHE_HOME (the image's) and temporary files
