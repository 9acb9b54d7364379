"""Fuzzing the control plane of a live server: no JSON body or query gets a 5xx.

Hypothesis draws bodies for the JSON routes (any JSON value, and objects with each route's fields
set to hostile values: huge numbers, deep nesting, long and odd strings, cron fields that never
match, durations past any date) and queries for the routes that read times and limits. Every
answer must be a 2xx or a 4xx with cloche's error shape. Requests carry an admin token, so the
test holds whether or not the control plane requires one on loopback. The scheduler is off: a
body that happens to be valid creates a job or a monitor, which must not start running.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

import cloche
from cloche.auth.tokens import create_token
from cloche.config import Settings
from cloche.store.store import Store
from tests.integration._request_bodies import json_values
from tests.integration.conftest import ServerFactory

API = "/api/v1"
FUZZ = hypothesis_settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DEEP = "[" * 50_000 + "]" * 50_000

hostile_numbers = st.sampled_from([-1, 0, 2**31, 2**63, 10**30, -(10**30), 1e308, 0.5, -0.0])
hostile_strings = st.sampled_from(
    ["", " ", "x" * 5000, "../../etc", "churn", "churn:1", "churn@prod", "churn:" + "9" * 20,
     "999999999d", "9" * 400 + "s", "0 0 31 2 *", "* * * * * *", "61 25 * * *", "@yearly",
     "2026-13-45", "\x00", "é☃", "null", "1e400"]
)  # fmt: skip
hostile_values = (
    hostile_numbers
    | hostile_strings
    | st.booleans()
    | st.none()
    | st.just(json.loads("[" * 200 + "]" * 200))
    | st.dictionaries(hostile_strings, hostile_numbers, max_size=3)
    | st.lists(hostile_strings, max_size=3)
)
FIELDS = {
    "/endpoints": ["name", "description", "log_sample_rate"],
    "/endpoints/churn/deployments": ["model", "traffic", "shadow", "max_batch_size", "timeout_ms"],
    "/endpoints/churn/traffic": ["traffic"],
    "/batch-jobs": ["model", "input", "output", "input_format", "workers", "chunk_rows",
                    "max_error_rate", "engine", "passthrough", "id_column"],
    "/batch-schedules": ["model", "input", "output", "cron", "chunk_rows"],
    "/monitors": ["endpoint", "name", "config"],
    "/pipeline-schedules": ["pipeline", "cron", "params", "start", "end", "max_runs",
                            "max_concurrent", "catch_up"],
    "/endpoints/churn/feedback": ["labels"],
    "/tokens": ["role", "name", "expires_in", "ttl"],
    "/pipelines": ["source", "file_name", "graph"],
    "/pipelines/churn/runs": ["params", "executor"],
    "/pipelines/runs/pr_0/steps/approval/approve": ["approved", "comment"],
}  # fmt: skip
METHOD = {"/endpoints/churn/traffic": "PUT"}
CONFIG_FIELDS = ["every_s", "window_s", "cooldown_s", "min_rows", "skew_threshold", "alerts",
                 "feature_thresholds", "min_breaches", "of_runs", "metric"]  # fmt: skip


def route_bodies() -> st.SearchStrategy[tuple[str, Any]]:
    """(route, body): an object with some of the route's fields, each set to a hostile value."""

    def body_for(route: str) -> st.SearchStrategy[tuple[str, Any]]:
        fields = st.dictionaries(st.sampled_from(FIELDS[route]), hostile_values, max_size=6)
        if route == "/monitors":
            config = st.dictionaries(st.sampled_from(CONFIG_FIELDS), hostile_values, max_size=4)
            fields = st.fixed_dictionaries({"endpoint": st.just("churn"), "config": config})
        return fields.map(lambda body: (route, body))

    return st.sampled_from(sorted(FIELDS)).flatmap(body_for)


@pytest.fixture
def api(
    settings: Settings, sklearn_model_file: Path, start_server: ServerFactory
) -> Iterator[httpx.Client]:
    """An admin's client of a live server whose endpoint `churn` serves a model."""
    with cloche.Client(settings=settings) as sdk:
        sdk.models.upload(sklearn_model_file, name="churn")
        sdk.endpoints.create("churn")
        sdk.endpoints.deploy("churn", "churn:1")
    store = Store.open(settings)
    try:
        token = create_token(store, role="admin", name="fuzz").token
    finally:
        store.close()
    server = start_server(scheduler={"enabled": False})
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url + API, headers=headers, timeout=30) as client:
        yield client


def assert_answered_well(response: httpx.Response, sent: object) -> None:
    status = response.status_code
    assert status < 500, f"{status} for {sent!r:.300}: {response.text[:500]}"
    if status < 300 or status == 204:
        return
    assert 400 <= status < 500, f"{status} for {sent!r:.300}"
    error = response.json()["error"]
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error


def assert_still_serving(api: httpx.Client) -> None:
    assert api.get("/endpoints/churn").status_code == 200


def test_any_json_value_on_a_json_route_gets_a_2xx_or_a_clean_4xx(api: httpx.Client) -> None:
    @FUZZ
    @given(value=json_values, route=st.sampled_from(sorted(FIELDS)))
    def prop(value: Any, route: str) -> None:
        response = api.request(METHOD.get(route, "POST"), route, content=json.dumps(value))
        assert_answered_well(response, (route, value))

    prop()
    assert_still_serving(api)


def test_route_fields_with_hostile_values_get_a_2xx_or_a_clean_4xx(api: httpx.Client) -> None:
    @hypothesis_settings(FUZZ, max_examples=150)
    @given(sent=route_bodies())
    def prop(sent: tuple[str, Any]) -> None:
        route, body = sent
        response = api.request(METHOD.get(route, "POST"), route, json=body)
        assert_answered_well(response, sent)

    prop()
    assert_still_serving(api)


queries = st.sampled_from(
    ["/endpoints/churn/logs", "/endpoints/churn/shadow-agreement", "/batch-jobs", "/alerts",
     "/audit", "/monitors/churn/runs", "/endpoints/nope/logs"]
)  # fmt: skip
query_keys = st.sampled_from(["since", "until", "limit", "state", "schedule_id", "status"])


def test_queries_with_hostile_values_get_a_2xx_or_a_clean_4xx(api: httpx.Client) -> None:
    @hypothesis_settings(FUZZ, max_examples=100)
    @given(route=queries, params=st.dictionaries(query_keys, hostile_strings | hostile_numbers))
    def prop(route: str, params: dict[str, Any]) -> None:
        response = api.get(route, params={k: str(v) for k, v in params.items()})
        assert_answered_well(response, (route, params))

    prop()
    assert_still_serving(api)


@pytest.mark.parametrize(
    ("method", "route", "body"),
    [
        pytest.param("POST", "/endpoints", DEEP, id="deeply-nested-body"),
        pytest.param("POST", "/monitors", '{"endpoint": "churn", "config": ' + DEEP + "}",
                     id="deeply-nested-config"),
        pytest.param("POST", "/monitors", '{"endpoint": "churn", "config": {"every_s": 1e30}}',
                     id="monitor-every-past-any-date"),
        pytest.param("GET", "/endpoints/churn/logs?since=999999999d", None,
                     id="since-past-any-date"),
        pytest.param("GET", "/endpoints/churn/logs?since=" + "9" * 5000 + "d", None,
                     id="since-with-5000-digits"),
    ],
)  # fmt: skip
def test_hostile_requests_get_a_4xx_that_says_why(
    api: httpx.Client, method: str, route: str, body: str | None
) -> None:
    response = api.request(method, route, content=body)
    assert_answered_well(response, body)
    assert response.status_code in (400, 422), response.text[:500]
    assert len(response.content) < 4096  # the hostile input is not echoed back


def test_since_past_any_date_names_the_largest_accepted(api: httpx.Client) -> None:
    response = api.get("/endpoints/churn/logs", params={"since": "999999999d"})
    assert response.status_code == 422
    assert "36500d" in response.json()["error"]["message"]


def test_deeply_nested_form_fields_of_an_upload_get_422(
    api: httpx.Client, sklearn_model_file: Path
) -> None:
    files = [("files", (sklearn_model_file.name, sklearn_model_file.read_bytes()))]
    for field in ("labels", "metrics"):
        data = {"name": "nested", field: '{"a": ' + DEEP + "}"}
        response = api.post("/models", data=data, files=files)
        assert response.status_code == 422, response.text[:500]
        assert field in response.json()["error"]["message"]
