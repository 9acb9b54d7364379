"""Endpoints through the SDK, alike in-process and over HTTP (the `client` fixture)."""

from __future__ import annotations

from pathlib import Path

import pytest

import cloche
from cloche.errors import Conflict, DeploymentNotFound, EndpointNotFound, InvalidInput, ModelInUse


@pytest.fixture
def two_versions(client: cloche.Client, sklearn_model_file: Path) -> cloche.Client:
    client.models.upload(sklearn_model_file, name="churn")
    client.models.upload(sklearn_model_file, name="churn")
    client.endpoints.create("churn", description="churn scores")
    return client


def test_deploy_split_and_undeploy(two_versions: cloche.Client) -> None:
    c = two_versions
    assert c.endpoints.deploy("churn", "churn:1").traffic() == {"churn:1": 100}
    ep = c.endpoints.deploy("churn", "churn:2", traffic=10, max_batch_size=32)
    assert ep.traffic() == {"churn:1": 90, "churn:2": 10}
    assert [d.max_batch_size for d in ep.deployments] == [64, 32]
    assert c.endpoints.traffic("churn", {"1": 50, "churn:2": 50}).traffic() == {
        "churn:1": 50,
        "churn:2": 50,
    }
    assert c.endpoints.undeploy("churn", "churn:1").traffic() == {"churn:2": 100}
    assert [e.name for e in c.endpoints.list()] == ["churn"]
    assert c.endpoints.get("churn").description == "churn scores"
    c.endpoints.delete("churn")
    with pytest.raises(EndpointNotFound):
        c.endpoints.get("churn")


def test_errors_are_the_same_through_both_transports(two_versions: cloche.Client) -> None:
    c = two_versions
    c.endpoints.deploy("churn", "churn:1")
    with pytest.raises(Conflict, match="already exists"):
        c.endpoints.create("churn")
    with pytest.raises(Conflict, match="already deployed"):
        c.endpoints.deploy("churn", "churn:1")
    with pytest.raises(InvalidInput, match="sum to 100"):
        c.endpoints.traffic("churn", {"churn:1": 80})
    with pytest.raises(DeploymentNotFound):
        c.endpoints.undeploy("churn", "churn:2")
    with pytest.raises(ModelInUse):
        c.models.delete("churn:1")
    with pytest.raises(EndpointNotFound):
        c.endpoints.deploy("nope", "churn:1")
