"""The example pipelines in examples/pipelines/, run end to end against a real `cloche up` with
the guides' data (examples/make_churn.py): weekly scoring alerts a real webhook only when the
scored rows drifted; continuous rollout canaries a better version, waits for an approval given
with `cloche pipelines approve`, then moves prod, and leaves prod alone (alerting) otherwise."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.e2e._cli import cloche, ok_json
from tests.e2e._servers import UpProcess, cloche_command, cloche_up, server_env
from tests.integration._receivers import Webhook, webhook_receiver

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
WEEKLY = ROOT / "examples" / "pipelines" / "weekly_scoring.py"
ROLLOUT = ROOT / "examples" / "pipelines" / "continuous_rollout.py"
LOOPBACK = {"CLOCHE_EGRESS__ALLOW": "127.0.0.1"}  # the test's webhook receiver is on loopback
RUN_SECONDS = 240.0


@dataclass
class Site:
    """A running `cloche up`, the folder of the guides' files, and a webhook receiver."""

    server: UpProcess
    folder: Path
    hook: Webhook

    @property
    def channels(self) -> str:
        return f"channels={json.dumps([f'webhook:{self.hook.url}'])}"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    folder = tmp_path / "work"
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "make_churn.py"), str(folder)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    # The shared fixture's CLOCHE_HOME: the server, the CLI and the pipelines share one store.
    with cloche_up(tmp_path / "home") as server, webhook_receiver() as hook:
        yield Site(server, folder, hook)


def _cli(site: Site, *args: str | Path) -> None:
    result = cloche(*args)
    assert result.exit_code == 0, result.output


def _production(site: Site, model_file: str) -> None:
    """``churn@prod`` (version 1, from ``model_file``) serving all of endpoint ``churn``."""
    _cli(site, "models", "upload", site.folder / model_file, "--name", "churn",
         "--baseline", site.folder / "train.parquet", "--alias", "prod")  # fmt: skip
    _cli(site, "endpoints", "create", "churn")
    _cli(site, "endpoints", "deploy", "churn", "churn@prod")


def _run_here(site: Site, target: Path, *params: str) -> dict[str, Any]:
    """``cloche pipelines run`` in the data folder, as a user would; the run as JSON."""
    args = [a for p in params for a in ("-p", p)]
    proc = subprocess.run(
        cloche_command("pipelines", "run", str(target), *args, "--json"),
        cwd=site.folder,
        env=server_env(site.server.home, LOOPBACK),
        capture_output=True,
        text=True,
        timeout=RUN_SECONDS,
    )
    assert proc.stdout, proc.stderr
    run: dict[str, Any] = json.loads(proc.stdout)
    return run


def _outputs(run: dict[str, Any], step: str) -> dict[str, Any]:
    [found] = [s for s in run["steps"] if s["step"] == step and s["state"] != "failed"]
    outputs: dict[str, Any] = found["outputs"]
    return outputs


def _states(run: dict[str, Any]) -> dict[str, str]:
    return {s["step"]: s["state"] for s in run["steps"]}


# Weekly scoring


def _weekly_setup(site: Site) -> None:
    _production(site, "churn.joblib")
    # No channels of its own: the pipeline decides whom to tell.
    _cli(site, "monitors", "create", "churn", "--skew-threshold", "0.3")


def test_weekly_scoring_of_drifted_customers_alerts_the_webhook(site: Site) -> None:
    _weekly_setup(site)
    drifted = site.folder / "drifted"
    drifted.mkdir()
    for part in sorted((site.folder / "data" / "customers").glob("*.parquet")):
        rows = pd.read_parquet(part)
        rows["tenure_months"] = rows["tenure_months"] % 3 + 1  # only new customers this week
        rows.to_parquet(drifted / part.name)
    run = _run_here(site, WEEKLY, "input=drifted", site.channels)
    assert run["state"] == "succeeded", run
    drift = _outputs(run, "check_drift")
    assert drift["drifted"] is True and "batch:skew:tenure_months" in drift["breaches"]
    sent = _outputs(run, "send_alert")
    assert sent["failed"] == [] and len(sent["delivered"]) == 1
    [body] = site.hook.bodies
    assert body["alert"]["title"] == "weekly scoring: the scored data drifted"
    assert "tenure_months" in body["text"] and "churn@prod" in body["text"]
    job = _outputs(run, "batch_predict")["output"]
    assert ok_json("batch", "show", job)["state"] == "succeeded"


def test_weekly_scoring_of_usual_customers_sends_no_alert(site: Site) -> None:
    _weekly_setup(site)
    run = _run_here(site, WEEKLY, site.channels)  # the default input: data/customers
    assert run["state"] == "succeeded", run
    assert _outputs(run, "check_drift")["drifted"] is False
    states = _states(run)
    assert states["send_alert"] == "skipped" and states["batch_predict"] == "succeeded"
    assert site.hook.bodies == []
    assert (site.folder / "scored").is_dir()


# Continuous rollout


def _start_rollout(site: Site, model_file: str, *more: str) -> subprocess.Popen[str]:
    params = [f"model_file={model_file}", f"url={site.server.url}", site.channels, *more]
    return subprocess.Popen(
        cloche_command(
            "pipelines", "run", str(ROLLOUT), *[a for p in params for a in ("-p", p)], "--json"
        ),
        cwd=site.folder,
        env=server_env(site.server.home, LOOPBACK),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _waiting_for_approval(proc: subprocess.Popen[str]) -> str:
    """The run's id once its approval step waits; fails if the run ends first."""
    deadline = time.monotonic() + RUN_SECONDS
    while time.monotonic() < deadline:
        runs = ok_json("pipelines", "runs")
        if runs and runs[0]["state"] == "waiting":
            run_id: str = runs[0]["id"]
            return run_id
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the run ended without waiting for approval: {out}\n{err}")
        time.sleep(0.5)
    proc.kill()
    raise AssertionError(f"no run waited for approval within {RUN_SECONDS} s")


def _finished(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=RUN_SECONDS)
    assert out, err
    run: dict[str, Any] = json.loads(out)
    return run


def test_a_better_version_is_canaried_approved_then_promoted_to_all_traffic(site: Site) -> None:
    _production(site, "churn.joblib")
    proc = _start_rollout(site, "churn-v2.joblib")
    run_id = _waiting_for_approval(proc)
    waiting = ok_json("pipelines", "show", run_id)
    canary = _outputs(waiting, "check_endpoint")
    assert canary["healthy"] is True and canary["requests"] > 0 and canary["error_rate"] == 0
    assert _outputs(waiting, "deploy_model")["output"] == {"churn:1": 90, "churn:2": 10}
    assert ok_json("models", "show", "churn@prod")["version"] == 1  # not before the approval
    _cli(site, "pipelines", "approve", run_id, "approval", "--comment", "canary looks fine")
    run = _finished(proc)
    assert run["state"] == "succeeded", run
    decision = _outputs(run, "approval")
    assert decision["approved"] is True and decision["comment"] == "canary looks fine"
    assert _outputs(run, "promote_alias")["output"] == "churn:2"
    assert _outputs(run, "report")["output"] == {
        "traffic": {"churn:1": 0, "churn:2": 100}, "production": "churn:2"
    }  # fmt: skip
    assert ok_json("models", "show", "churn@prod")["version"] == 2
    assert ok_json("endpoints", "show", "churn")["deployments"]
    assert site.hook.bodies == []  # nothing went wrong, nobody was alerted


def test_a_worse_version_leaves_prod_alone_and_alerts(site: Site) -> None:
    _production(site, "churn-v2.joblib")
    proc = _start_rollout(site, "churn.joblib")
    run = _finished(proc)
    assert run["state"] == "succeeded", run
    evaluation = _outputs(run, "evaluate_model")
    assert evaluation["passed"] is False
    assert any("worse than churn@prod" in r for r in evaluation["reasons"])
    states = _states(run)
    assert states["deploy_model"] == "skipped" and states["approval"] == "skipped"
    assert _outputs(run, "report")["output"] == {
        "traffic": {"churn:1": 100}, "production": "churn:1"
    }  # fmt: skip
    [body] = site.hook.bodies
    assert body["alert"]["title"] == "rollout stopped: the new version is worse than prod"
    assert "worse than churn@prod" in body["text"]


def test_a_rejected_canary_is_rolled_back_and_alerted(site: Site) -> None:
    _production(site, "churn.joblib")
    proc = _start_rollout(site, "churn-v2.joblib")
    run_id = _waiting_for_approval(proc)
    _cli(site, "pipelines", "approve", run_id, "approval", "--reject", "--comment", "not today")
    run = _finished(proc)
    assert run["state"] == "succeeded", run
    assert _outputs(run, "approval")["approved"] is False
    assert _states(run)["promote_alias"] == "skipped"
    assert _outputs(run, "report")["output"] == {
        "traffic": {"churn:1": 100, "churn:2": 0}, "production": "churn:1"
    }  # fmt: skip
    assert ok_json("models", "show", "churn@prod")["version"] == 1
    [body] = site.hook.bodies
    assert body["alert"]["title"] == "rollout rejected: traffic is back on prod"
    assert "not today" in body["text"]


def test_a_canary_without_traffic_is_no_evidence_so_it_is_rolled_back_and_alerted(
    site: Site,
) -> None:
    _production(site, "churn.joblib")
    run = _finished(_start_rollout(site, "churn-v2.joblib", "requests=0"))
    assert run["state"] == "succeeded", run
    canary = _outputs(run, "check_endpoint")
    assert canary["healthy"] is False and canary["requests"] == 0
    states = _states(run)
    assert states["approval"] == "skipped" and states["deploy_model-4"] == "succeeded"
    assert _outputs(run, "report")["output"] == {
        "traffic": {"churn:1": 100, "churn:2": 0}, "production": "churn:1"
    }  # fmt: skip
    [body] = site.hook.bodies
    assert body["alert"]["title"] == "rollout rolled back: the canary was unhealthy"
    assert "0 requests in the window" in body["text"]
