"""Bad forms of a waiting deploy, on every surface: the CLI's --wait-timeout, REST's wait_s and
the SDK's wait_timeout_s are refused before anything is deployed, with the status and exit code
of errors.py and a message saying what to give instead."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import cloche
from cloche.config import Settings
from cloche.errors import EndpointNotFound, InvalidInput
from tests.e2e._cli import cloche as cli
from tests.integration.conftest import LiveServer


@pytest.fixture
def sdk(settings: Settings, sklearn_model_file: Path) -> cloche.Client:
    client = cloche.Client(settings=settings)
    client.models.upload(sklearn_model_file, name="churn")
    client.endpoints.create("churn")
    return client


@pytest.mark.parametrize(
    ("form", "says"),
    [
        ("-1", "greater than or equal to 0.1"),
        ("0", "greater than or equal to 0.1"),
        ("3601", "less than or equal to 3600"),
        ("1e9", "less than or equal to 3600"),
        ("nan", "less than or equal to 3600"),
        ("soon", "should be a valid number"),
    ],
)
def test_cli_refuses_a_bad_wait_timeout_before_deploying(
    sdk: cloche.Client, form: str, says: str
) -> None:
    result = cli("endpoints", "deploy", "churn", "churn:1", "--wait", "--wait-timeout", form)
    text = " ".join(w for w in result.output.split() if w != "│")  # Rich's box wraps it
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--wait-timeout'" in text and says in text
    assert sdk.endpoints.get("churn").deployments == []


def test_cli_refuses_a_wait_timeout_without_wait_saying_to_add_it(sdk: cloche.Client) -> None:
    result = cli("endpoints", "deploy", "churn", "churn:1", "--wait-timeout", "30")
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "--wait-timeout only applies to a deploy that waits" in text
    assert "cloche endpoints deploy churn churn:1 --wait --wait-timeout 30" in text
    assert sdk.endpoints.get("churn").deployments == []


@pytest.mark.parametrize(
    ("wait_s", "says"),
    [
        (-1, "the wait must be more than 0 and at most 3600 s, got -1"),
        (0, "the wait must be more than 0 and at most 3600 s, got 0"),
        (3601, "the wait must be more than 0 and at most 3600 s, got 3601"),
        ("NaN", "the wait must be more than 0 and at most 3600 s, got nan"),
        ("Infinity", "the wait must be more than 0 and at most 3600 s, got inf"),
        ("soon", "wait_s"),
        ([5], "wait_s"),
    ],
)
def test_rest_refuses_a_bad_wait_s_with_422_before_deploying(
    sdk: cloche.Client, live_server: LiveServer, wait_s: object, says: str
) -> None:
    answer = httpx.post(
        f"{live_server.url}/api/v1/endpoints/churn/deployments",
        json={"model": "churn:1", "wait_s": wait_s},
        headers=live_server.auth,
        timeout=30,
    )
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert says in error["message"], error
    assert sdk.endpoints.get("churn").deployments == []


def test_rest_wait_s_on_an_endpoint_that_does_not_exist_is_404(
    sdk: cloche.Client, live_server: LiveServer
) -> None:
    answer = httpx.post(
        f"{live_server.url}/api/v1/endpoints/nobody/deployments",
        json={"model": "churn:1", "wait_s": 5},
        headers=live_server.auth,
        timeout=30,
    )
    assert answer.status_code == 404, answer.text
    assert answer.json()["error"]["code"] == "endpoint_not_found"


def test_sdk_refuses_a_bad_wait_timeout_the_same_way_on_both_transports(
    sdk: cloche.Client, client: cloche.Client
) -> None:
    with pytest.raises(InvalidInput, match="more than 0 and at most 3600 s, got -5") as refused:
        client.endpoints.deploy("churn", "churn:1", wait=True, wait_timeout_s=-5)
    assert "wait_timeout_s=120" in (refused.value.hint or "")
    with pytest.raises(EndpointNotFound):
        client.endpoints.deploy("nobody", "churn:1", wait=True, wait_timeout_s=5)
    assert client.endpoints.get("churn").deployments == []
