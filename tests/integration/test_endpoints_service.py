"""Endpoints and deployments in the service layer, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloche import audit
from cloche.auth.roles import LOCAL_USER
from cloche.endpoints import service as endpoints
from cloche.errors import (
    Conflict,
    DeploymentNotFound,
    EndpointNotFound,
    InvalidInput,
    ModelInUse,
)
from cloche.registry import service as registry
from cloche.registry import upload
from cloche.registry.inspection import inspect_here
from cloche.serving.state import read_generation
from cloche.store.store import Store


@pytest.fixture
def two_versions(any_store: Store, sklearn_model_file: Path) -> Store:
    for _ in range(2):
        upload.upload_model(
            any_store,
            principal=LOCAL_USER,
            inspector=inspect_here,
            source=sklearn_model_file,
            name="churn",
        )
    endpoints.create_endpoint(any_store, name="churn")
    return any_store


def test_first_deployment_takes_all_traffic(two_versions: Store) -> None:
    ep = endpoints.deploy(two_versions, endpoint="churn", ref="churn:1")
    assert ep.traffic() == {"churn:1": 100}


def test_deploy_with_traffic_scales_the_others_down(two_versions: Store) -> None:
    endpoints.deploy(two_versions, endpoint="churn", ref="churn:1")
    ep = endpoints.deploy(two_versions, endpoint="churn", ref="churn:2", traffic=10)
    assert ep.traffic() == {"churn:1": 90, "churn:2": 10}


def test_traffic_accepts_bare_versions_and_must_sum_to_100(two_versions: Store) -> None:
    endpoints.deploy(two_versions, endpoint="churn", ref="churn:1")
    endpoints.deploy(two_versions, endpoint="churn", ref="churn:2", traffic=10)
    ep = endpoints.set_traffic(two_versions, endpoint="churn", split={"1": 30, "churn:2": 70})
    assert ep.traffic() == {"churn:1": 30, "churn:2": 70}
    with pytest.raises(InvalidInput, match="= 90"):
        endpoints.set_traffic(two_versions, endpoint="churn", split={"1": 30, "2": 60})


def test_undeploy_gives_its_share_to_the_rest(two_versions: Store) -> None:
    endpoints.deploy(two_versions, endpoint="churn", ref="churn:1")
    endpoints.deploy(two_versions, endpoint="churn", ref="churn:2", traffic=10)
    ep = endpoints.undeploy(two_versions, endpoint="churn", ref="churn:1")
    assert ep.traffic() == {"churn:2": 100}


def test_shadow_takes_no_live_traffic(two_versions: Store) -> None:
    endpoints.deploy(two_versions, endpoint="churn", ref="churn:1")
    ep = endpoints.deploy(two_versions, endpoint="churn", ref="churn:2", shadow=True)
    assert ep.traffic() == {"churn:1": 100}
    assert [d.ref for d in ep.deployments if d.shadow] == ["churn:2"]
    with pytest.raises(InvalidInput, match="shadow"):
        endpoints.set_traffic(two_versions, endpoint="churn", split={"1": 50, "2": 50})


def test_every_change_bumps_the_generation_and_is_audited(two_versions: Store) -> None:
    start = read_generation(two_versions)
    endpoints.deploy(two_versions, endpoint="churn", ref="churn:1", actor="alice")
    endpoints.deploy(two_versions, endpoint="churn", ref="churn:2", traffic=50)
    assert read_generation(two_versions) == start + 2
    rows = audit.list_audit(two_versions, resource_type="endpoint")
    assert rows[0].after == {"traffic": {"churn:1": 50, "churn:2": 50}, "shadow": []}
    assert rows[0].before == {"traffic": {"churn:1": 100}, "shadow": []}
    assert rows[1].actor == "alice"


def test_deployed_version_cannot_be_deleted(two_versions: Store) -> None:
    endpoints.deploy(two_versions, endpoint="churn", ref="churn:1")
    with pytest.raises(ModelInUse, match="churn:1 on 'churn'") as info:
        registry.delete(two_versions, ref="churn")
    assert "cloche endpoints undeploy churn churn:1" in (info.value.hint or "")
    assert registry.delete(two_versions, ref="churn:2").deleted_versions == [2]
    endpoints.delete_endpoint(two_versions, name="churn")
    assert registry.delete(two_versions, ref="churn").model_deleted


def test_bad_requests_name_what_is_wrong(two_versions: Store) -> None:
    with pytest.raises(EndpointNotFound, match="'nope'"):
        endpoints.deploy(two_versions, endpoint="nope", ref="churn:1")
    with pytest.raises(Conflict):
        endpoints.create_endpoint(two_versions, name="churn")
    endpoints.deploy(two_versions, endpoint="churn", ref="churn:1")
    with pytest.raises(Conflict, match="already deployed"):
        endpoints.deploy(two_versions, endpoint="churn", ref="churn:1")
    with pytest.raises(DeploymentNotFound, match=r"deployed: churn:1"):
        endpoints.undeploy(two_versions, endpoint="churn", ref="churn:2")
    with pytest.raises(InvalidInput, match="max_batch_size"):
        endpoints.deploy(two_versions, endpoint="churn", ref="churn:2", max_batch_size=0)
    with pytest.raises(InvalidInput, match="0-100"):
        endpoints.deploy(two_versions, endpoint="churn", ref="churn:2", traffic=101)
