"""Continuous rollout: a new version goes to production only if it is no worse than the one
there, its canary stays healthy, and a person approves; otherwise production stays as it was
and the channels hear why. A report of where things ended goes out whatever happened.

    upload -> evaluate against prod on a labelled holdout
      no worse: deploy a 10% canary -> send traffic -> check the canary's error rate
        healthy: wait for approval
          approved: 100% to the new version, move `prod`
          rejected: roll back (traffic to prod), alert
        unhealthy: roll back, alert
      worse: alert (nothing was deployed)
    always: report the endpoint's split and what `prod` points at

Run it where `python examples/make_churn.py` wrote its files, on the server's CLOCHE_HOME, with
`churn@prod` serving on the endpoint `churn`:

    cloche pipelines run examples/pipelines/continuous_rollout.py -p url=http://127.0.0.1:8080
    cloche pipelines approve RUN approval       # or --reject
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import pandas as pd

import cloche
from cloche.pipelines import Else, ExitHandler, If, component, pipeline
from cloche.pipelines.components import (
    approval,
    check_endpoint,
    deploy_model,
    evaluate_model,
    promote_alias,
    send_alert,
    upload_model,
)


@component
def send_traffic(url: str, endpoint: str, data: str, label_column: str, requests: int) -> int:
    """Send ``requests`` one-row predictions of ``data`` to the endpoint (a stand-in for live
    traffic), then wait until the payload log holds them so a check sees them; returns the
    count answered."""
    rows = pd.read_parquet(data).drop(columns=[label_column], errors="ignore")
    started = datetime.now(UTC)
    answered = 0
    with httpx.Client(base_url=url, timeout=30) as http:
        for i in range(requests):
            row = rows.iloc[i % len(rows)].to_dict()
            reply = http.post(f"/v1/models/{endpoint}:predict", json={"instances": [row]})
            answered += reply.status_code < 500
    with cloche.Client() as client:
        deadline = time.monotonic() + 30
        while client.logs.read(endpoint, since=started, limit=100_000).num_rows < requests:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the payload log of {endpoint} did not show the requests")
            time.sleep(0.2)
    print(f"{answered} of {requests} requests answered")
    return answered


@component
def explain(reasons: list[str]) -> str:
    """An alert's text: the reasons a check gave."""
    return "; ".join(reasons)


@component
def report(endpoint: str, production: str) -> dict:  # type: ignore[type-arg]
    """Where the rollout ended: the endpoint's traffic split and the version behind prod."""
    with cloche.Client() as client:
        split = client.endpoints.get(endpoint).traffic()
        prod = client.models.show(production).ref
    print(f"{endpoint} serves {split}; {production} is {prod}")
    return {"traffic": split, "production": prod}


@pipeline(name="continuous-rollout")
def continuous_rollout(
    model_file: str = "churn-v2.joblib",
    name: str = "churn",
    production: str = "churn@prod",
    endpoint: str = "churn",
    holdout: str = "holdout.parquet",
    label_column: str = "churned",
    baseline: str = "train.parquet",
    url: str = "http://127.0.0.1:8080",
    requests: int = 200,
    max_error_rate: float = 0.05,
    approval_timeout_seconds: float = 86_400.0,
    channels: list = ["log"],  # noqa: B006 -- a pipeline's default is data, never mutated
) -> None:
    """Roll ``model_file`` out on ``endpoint`` as described above."""
    done = report(endpoint=endpoint, production=production)
    with ExitHandler(done):
        candidate = upload_model(path=model_file, name=name, baseline=baseline)
        check = evaluate_model(
            model=candidate.output,
            data=holdout,
            label_column=label_column,
            against=production,
        )
        with If(check.outputs["passed"] == True):  # noqa: E712 -- a condition, not a Python test
            canary = deploy_model(endpoint=endpoint, model=candidate.output, traffic=10)
            sent = send_traffic(
                url=url, endpoint=endpoint, data=holdout, label_column=label_column,
                requests=requests,
            ).after(canary)  # fmt: skip
            health = check_endpoint(
                endpoint=endpoint,
                model=candidate.output,
                max_error_rate=max_error_rate,
                window_seconds=3600,
            ).after(sent)
            with If(health.outputs["healthy"] == True):  # noqa: E712
                decision = approval(
                    message="Promote the canary to 100% and prod?",
                    timeout_seconds=approval_timeout_seconds,
                )
                with If(decision.outputs["approved"] == True):  # noqa: E712
                    full = deploy_model(endpoint=endpoint, model=candidate.output, traffic=100)
                    promote_alias(model=candidate.output, alias="prod").after(full)
                with Else():
                    back = deploy_model(endpoint=endpoint, model=production, traffic=100)
                    send_alert(
                        channels=channels,
                        title="rollout rejected: traffic is back on prod",
                        text=decision.outputs["comment"],
                    ).after(back)
            with Else():
                back = deploy_model(endpoint=endpoint, model=production, traffic=100)
                reasons = health.outputs["reasons"]
                send_alert(
                    channels=channels,
                    title="rollout rolled back: the canary was unhealthy",
                    text=explain(reasons=reasons).output,
                ).after(back)
        with Else():
            send_alert(
                channels=channels,
                title="rollout stopped: the new version is worse than prod",
                text=explain(reasons=check.outputs["reasons"]).output,
            )
