"""Console endpoint pages on a real server: list, create, deploy, split, undeploy, traffic
charts' data, payload-log rows, shadow agreement, and deploying from a model's page."""

from __future__ import annotations

import html
import json
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloche import audit
from cloche.console.paging import PER_PAGE
from cloche.endpoints import service as endpoints
from cloche.monitoring.traffic_maths import Counts
from cloche.monitoring.traffic_samples import record_sample
from cloche.store.store import Store
from cloche.store.tables import utcnow

from ._console import Browser, signed_in, signed_in_as, text_of, upload_model
from .conftest import LiveServer, ServerFactory

ROW = [0.1, 0.2, 0.3, 0.4]
BUCKETS = 13


@pytest.fixture
def churn(store: Store, sklearn_model_file: Path) -> str:
    upload_model(store, sklearn_model_file, "churn")
    upload_model(store, sklearn_model_file, "churn")
    endpoints.create_endpoint(store, name="churn-live")
    endpoints.deploy(store, endpoint="churn-live", ref="churn:1")
    return "churn-live"


@pytest.fixture
def admin(live_server: LiveServer) -> Any:
    with signed_in(live_server.url, live_server.token) as browser:
        yield browser


@pytest.fixture
def viewer(live_server: LiveServer, store: Store) -> Any:
    with signed_in_as(store, live_server.url, "viewer") as browser:
        yield browser


def test_the_endpoints_page_lists_health_deployments_and_traffic(
    admin: Browser, store: Store, churn: str
) -> None:
    endpoints.deploy(store, endpoint=churn, ref="churn:2", shadow=True)
    endpoints.create_endpoint(store, name="empty")
    page = text_of(admin.get("/console/endpoints").text)
    assert "2 endpoints" in page
    assert "churn-live serving 2 churn:1 100%, churn:2 shadow" in page
    assert "empty nothing deployed 0" in page
    assert "Create an endpoint" in page


def test_search_sort_and_pages_of_endpoints(admin: Browser, store: Store) -> None:
    for i in range(PER_PAGE + 2):
        endpoints.create_endpoint(store, name=f"e{i:02d}")
    endpoints.create_endpoint(store, name="fraud")
    first = text_of(admin.get("/console/endpoints").text)
    assert f"{PER_PAGE + 3} endpoints" in first and "Page 1 of 2" in first
    assert "e00" in first and "fraud" not in first
    assert "fraud" in text_of(admin.get("/console/endpoints?page=2").text)
    backwards = text_of(admin.get("/console/endpoints?sort=-name").text)
    assert backwards.index("fraud") < backwards.index("e26")
    found = admin.get("/console/endpoints?q=FRA", htmx=True)
    assert found.text.lstrip().startswith('<section id="endpoints-table"')
    assert "1 endpoint matching “FRA”" in text_of(found.text) and "e00" not in found.text


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/console/endpoints?sort=evil", 400, "sort by one of"),
        ("/console/endpoints?page=0", 400, "pages count from 1"),
        ("/console/endpoints/nope", 404, "does not exist"),
        ("/console/endpoints/churn-live/traffic?window=2y", 400, "is not one of 1h, 1d"),
        ("/console/endpoints/churn-live/logs?since=forever", 400, "is not one of 1h, 24h, 7d"),
        ("/console/endpoints/bad%20name", 422, "invalid model name"),
    ],
)
def test_bad_paths_and_queries_get_a_clear_error(
    admin: Browser, churn: str, path: str, status: int, says: str
) -> None:
    response = admin.get(path)
    assert response.status_code == status and says in text_of(response.text)


def test_creating_an_endpoint_opens_its_page_and_a_duplicate_is_refused_beside_the_form(
    admin: Browser, store: Store, churn: str
) -> None:
    form = {"csrf_token": admin.csrf(), "name": "fraud", "description": "card fraud"}
    response = admin.post("/console/endpoints", form, htmx=True)
    assert response.status_code == 204
    assert response.headers["HX-Redirect"] == "/console/endpoints/fraud"
    assert endpoints.get_endpoint(store, "fraud").description == "card fraud"
    again = admin.post("/console/endpoints", {**form, "csrf_token": admin.csrf()}, htmx=True)
    assert again.status_code == 409 and again.headers["HX-Retarget"] == "#endpoint-create"
    assert 'id="create-error"' in again.text and "already exists" in text_of(again.text)
    plain = admin.post("/console/endpoints", {"csrf_token": admin.csrf(), "name": "x y"})
    assert plain.status_code == 422 and "<html" in plain.text  # without htmx: a page


def test_the_endpoint_page_shows_deployments_and_the_editor(admin: Browser, churn: str) -> None:
    page = admin.get(f"/console/endpoints/{churn}")
    shown = text_of(page.text)
    assert "churn-live" in shown and "Health serving" in shown
    assert "churn:1 100% sklearn 64 10000 ms" in shown
    assert 'name="share:churn:1" value="100"' in page.text
    assert "Deploy a version" in shown and "Undeploy churn:1" in shown


def test_deploying_a_second_version_as_a_canary_splits_traffic(
    admin: Browser, store: Store, churn: str
) -> None:
    form = {"csrf_token": admin.csrf(), "model": "churn:2", "traffic": "10", "shadow": ""}
    response = admin.post(f"/console/endpoints/{churn}/deployments", form, htmx=True)
    assert response.status_code == 200 and response.headers["HX-Trigger"] == "endpoint-changed"
    assert response.text.lstrip().startswith('<div id="endpoint-main">')
    assert "churn:2 is deployed" in text_of(response.text)
    assert endpoints.get_endpoint(store, churn).traffic() == {"churn:1": 90, "churn:2": 10}


@pytest.mark.parametrize(
    ("fields", "status", "says"),
    [
        ({"model": "churn:9"}, 404, "no version 9"),
        ({"model": "churn:2", "traffic": "ten"}, 400, "is not a percentage"),
        ({"model": "churn:2", "traffic": "150"}, 422, "--traffic must be 0-100"),
        ({"model": "churn:2", "traffic": "10", "shadow": "on"}, 422, "takes no live traffic"),
        ({"model": "churn:1"}, 409, "already"),
    ],
)
def test_a_refused_deploy_shows_the_error_beside_the_deploy_form(
    admin: Browser, store: Store, churn: str, fields: dict[str, str], status: int, says: str
) -> None:
    form = {"csrf_token": admin.csrf(), "traffic": "", "shadow": "", **fields}
    response = admin.post(f"/console/endpoints/{churn}/deployments", form, htmx=True)
    assert response.status_code == status, text_of(response.text)
    assert (
        response.headers["HX-Retarget"] == "#deploy-form" and 'id="deploy-error"' in response.text
    )
    assert says in text_of(response.text)
    assert len(endpoints.get_endpoint(store, churn).deployments) == 1


def test_the_split_editor_sets_traffic_and_audits_it(
    admin: Browser, store: Store, churn: str
) -> None:
    endpoints.deploy(store, endpoint=churn, ref="churn:2", traffic=50)
    form = {"csrf_token": admin.csrf(), "share:churn:1": "90", "share:churn:2": "10"}
    response = admin.post(f"/console/endpoints/{churn}/traffic", form)
    assert (
        response.status_code == 303
        and response.headers["location"] == f"/console/endpoints/{churn}"
    )
    assert endpoints.get_endpoint(store, churn).traffic() == {"churn:1": 90, "churn:2": 10}
    entry = audit.list_audit(store, resource_type="endpoint", limit=1)[0]
    assert entry.action == "endpoint.traffic" and entry.actor.startswith("token:")


@pytest.mark.parametrize(
    ("shares", "says"),
    [
        (("90", "20"), "traffic must sum to 100, but 90 (churn:1) + 20 (churn:2) = 110"),
        (("90", "x"), "cannot read traffic 'churn:2=x'"),
        (("90", ""), "cannot read traffic 'churn:2='"),
    ],
)
def test_a_split_not_summing_to_100_is_refused_with_the_clis_message(
    admin: Browser, store: Store, churn: str, shares: tuple[str, str], says: str
) -> None:
    endpoints.deploy(store, endpoint=churn, ref="churn:2", traffic=50)
    form = {"csrf_token": admin.csrf(), "share:churn:1": shares[0], "share:churn:2": shares[1]}
    response = admin.post(f"/console/endpoints/{churn}/traffic", form, htmx=True)
    assert response.status_code == 422
    assert response.headers["HX-Retarget"] == "#split-form" and 'id="split-error"' in response.text
    assert says in html.unescape(response.text)
    assert f'value="{shares[1]}"' in response.text  # what was typed stays in the editor
    assert endpoints.get_endpoint(store, churn).traffic() == {"churn:1": 50, "churn:2": 50}


def test_undeploy_gives_the_share_to_the_others(admin: Browser, store: Store, churn: str) -> None:
    endpoints.deploy(store, endpoint=churn, ref="churn:2", traffic=10)
    form = {"csrf_token": admin.csrf(), "ref": "churn:1"}
    response = admin.post(f"/console/endpoints/{churn}/undeploy", form, htmx=True)
    assert response.status_code == 200 and "churn:1 is undeployed" in text_of(response.text)
    assert endpoints.get_endpoint(store, churn).traffic() == {"churn:2": 100}
    gone = admin.post(f"/console/endpoints/{churn}/undeploy", {**form, "csrf_token": admin.csrf()})
    assert gone.status_code == 404 and "is not deployed" in text_of(gone.text)


def test_a_viewer_sees_no_forms_and_forged_posts_get_the_apis_403(
    viewer: Any, live_server: LiveServer, store: Store, churn: str
) -> None:
    page = viewer.get(f"/console/endpoints/{churn}").text
    assert "churn:1" in text_of(page)  # a viewer reads everything, changes nothing
    for section in ("traffic", "logs", "shadow"):
        assert viewer.get(f"/console/endpoints/{churn}/{section}", htmx=True).status_code == 200
    assert 'id="split-form"' not in page and 'id="deploy-form"' not in page
    assert "Undeploy" not in page
    assert 'id="endpoint-create"' not in viewer.get("/console/endpoints").text
    assert 'id="deploy-version-form"' not in viewer.get("/console/models/churn").text
    api = httpx.put(
        f"{live_server.url}/api/v1/endpoints/{churn}/traffic",
        json={"traffic": {"churn:1": 100}},
        headers={"Authorization": f"Bearer {viewer.token}"},
    )
    assert api.status_code == 403
    forged = [
        ("/console/endpoints", {"name": "mine"}),
        (f"/console/endpoints/{churn}/deployments", {"model": "churn:2"}),
        (f"/console/endpoints/{churn}/traffic", {"share:churn:1": "100"}),
        (f"/console/endpoints/{churn}/undeploy", {"ref": "churn:1"}),
        ("/console/models/churn/versions/2/deploy", {"endpoint": churn}),
    ]
    for path, fields in forged:
        response = viewer.post(path, {"csrf_token": viewer.csrf(), **fields})
        assert response.status_code == 403, path
        assert api.json()["error"]["message"] in text_of(response.text)
    assert len(endpoints.get_endpoint(store, churn).deployments) == 1
    assert len(endpoints.list_endpoints(store)) == 1


def test_a_forged_split_without_the_csrf_token_changes_nothing(
    admin: Browser, store: Store, churn: str
) -> None:
    endpoints.deploy(store, endpoint=churn, ref="churn:2", traffic=50)
    form = {"share:churn:1": "90", "share:churn:2": "10"}
    assert admin.post(f"/console/endpoints/{churn}/traffic", form).status_code == 403
    assert endpoints.get_endpoint(store, churn).traffic() == {"churn:1": 50, "churn:2": 50}


def test_deploying_from_a_model_page_goes_to_the_endpoint(
    admin: Browser, store: Store, churn: str
) -> None:
    assert 'id="deploy-version-form"' in admin.get("/console/models/churn?version=2").text
    form = {"csrf_token": admin.csrf(), "endpoint": churn, "traffic": "10", "shadow": ""}
    response = admin.post("/console/models/churn/versions/2/deploy", form, htmx=True)
    assert response.status_code == 204
    assert response.headers["HX-Redirect"] == f"/console/endpoints/{churn}"
    assert endpoints.get_endpoint(store, churn).traffic() == {"churn:1": 90, "churn:2": 10}
    missing = {**form, "csrf_token": admin.csrf(), "endpoint": "nowhere"}
    refused = admin.post("/console/models/churn/versions/2/deploy", missing, htmx=True)
    assert refused.status_code == 404
    assert refused.headers["HX-Retarget"] == "#deploy-version-form"
    assert "'nowhere'" in text_of(refused.text) and 'id="deploy-version-error"' in refused.text


@pytest.mark.parametrize("section", ["traffic", "logs", "shadow"])
def test_a_section_without_javascript_is_a_page_of_its_own(
    admin: Browser, churn: str, section: str
) -> None:
    alone = admin.get(f"/console/endpoints/{churn}/{section}", htmx=True)
    assert alone.status_code == 200 and "<html" not in alone.text
    assert alone.text.lstrip().startswith(f'<section id="endpoint-{section}"')
    full = admin.get(f"/console/endpoints/{churn}/{section}")
    assert "<html" in full.text and f'id="endpoint-{section}"' in full.text
    assert f"Endpoints / {churn}" in text_of(full.text)


def _counts(ok: int, errors: int = 0) -> Counts:
    latency = [0] * BUCKETS
    latency[2] = ok + errors  # every request in (2.5 ms, 5 ms]
    return Counts(ok, 0, errors, tuple(latency))


def test_the_traffic_section_says_no_traffic_yet_then_shows_each_deployment(
    admin: Browser, store: Store, churn: str
) -> None:
    quiet = admin.get(f"/console/endpoints/{churn}/traffic", htmx=True)
    assert "No traffic yet in the last hour" in text_of(quiet.text)
    endpoints.deploy(store, endpoint=churn, ref="churn:2", traffic=10)
    now = utcnow()
    # Both samples before the last whole minute: inside the last point of either window.
    for seconds_ago, one, two in (
        (200, _counts(0), _counts(0)),
        (100, _counts(90, 10), _counts(20)),
    ):
        totals = {(churn, "churn:1"): one, (churn, "churn:2"): two}
        at = now - timedelta(seconds=seconds_ago)
        record_sample(store, source="a:1", totals=totals, at=at, resolution_s=10)
    section = admin.get(f"/console/endpoints/{churn}/traffic?window=1d", htmx=True)
    shown = text_of(section.text)
    assert "churn:1 100" in shown and "churn:2 20" in shown
    assert "10.0%" in shown and "0.0%" in shown  # churn:1's errors; churn:2 has none
    assert "3.8 ms" in shown  # p50 inside the (2.5, 5] ms bucket
    data = json.loads(html.unescape(re.search(r'data-traffic="([^"]*)"', section.text)[1]))
    assert data["window"] == "1d" and data["step_s"] == 60
    assert [d["deployment"] for d in data["deployments"]] == ["churn:1", "churn:2"]


def test_recent_log_rows_and_shadow_agreement(
    settings: Any, store: Store, sklearn_model_file: Path, start_server: ServerFactory
) -> None:
    upload_model(store, sklearn_model_file, "churn")
    upload_model(store, sklearn_model_file, "churn")
    endpoints.create_endpoint(store, name="churn")
    endpoints.deploy(store, endpoint="churn", ref="churn:1")
    endpoints.deploy(store, endpoint="churn", ref="churn:2", shadow=True)
    server = start_server()
    for i in range(3):
        answer = httpx.post(
            f"{server.url}/v1/models/churn:predict",
            json={"instances": [ROW]},
            headers={"X-Request-Id": f"ok-{i}"},
        )
        assert answer.status_code == 200
    assert httpx.post(f"{server.url}/v1/models/churn:predict", content=b"{nope").status_code == 400
    with Browser(server.url) as admin:
        admin.sign_in(server.token)
        logs = _eventually(lambda: admin.get("/console/endpoints/churn/logs", htmx=True))
        shown = text_of(logs.text)
        assert "The newest 7 logged requests" in shown  # 4 live, 3 shadow copies
        assert "churn:1 400" in shown and "not valid JSON" in shown
        assert "churn:2 (shadow) 200" in shown and "[[0.1,0.2,0.3,0.4]]" in shown
        shadow = text_of(admin.get("/console/endpoints/churn/shadow", htmx=True).text)
        assert "churn:2 3 3 100.0%" in shadow


def _eventually(get: Any) -> httpx.Response:
    """Shadow copies are answered after the live one: wait until they are logged too."""
    response = get()
    for _ in range(50):
        if text_of(response.text).count("(shadow)") >= 3:
            break
        time.sleep(0.1)
        response = get()
    return response
