"""The pipelines bench/_seed.py registers and runs: real graphs built by the DSL (10-30 steps,
loops, branches, an exit handler, approvals), so the console draws what users' pipelines make.

Their components are never run here: the seed writes the step records a run of them leaves.
"""

from __future__ import annotations

from cloche.pipelines import (
    Dataset,
    Else,
    ExitHandler,
    If,
    Input,
    Metrics,
    Model,
    Output,
    ParallelFor,
    Pipeline,
    component,
    pipeline,
)
from cloche.pipelines.components import (
    approval,
    batch_predict,
    check_drift,
    check_endpoint,
    deploy_model,
    evaluate_model,
    promote_alias,
    send_alert,
    upload_model,
)

SEGMENTS = 24  # nightly-score's fan-out
FEATURES = 8  # drift-check's per-feature checks


@component
def extract(table: str, rows: Output[Dataset]) -> int:
    """Copy ``table`` to a Parquet file; the row count."""
    raise NotImplementedError


@component
def split(data: Input[Dataset], train: Output[Dataset], holdout: Output[Dataset]) -> None:
    """Split rows into training and holdout sets."""


@component
def train(
    data: Input[Dataset], region: str, model: Output[Model], metrics: Output[Metrics]
) -> float:
    """Fit one region's model; its AUC."""
    raise NotImplementedError


@component
def pick_best(regions: list) -> str:  # type: ignore[type-arg]
    """The path of the region's model that scored best."""
    raise NotImplementedError


@component
def merge(output: str, segments: int) -> str:
    """Join the scored segments under ``output`` into one."""
    raise NotImplementedError


@component
def feature_distance(monitor: str, feature: str) -> float:
    """One feature's distance in the monitor's newest window."""
    raise NotImplementedError


@component
def summary(title: str, endpoint: str) -> dict:  # type: ignore[type-arg]
    """Where things ended, for the run's record."""
    raise NotImplementedError


@pipeline(name="retrain")
def retrain(
    table: str = "warehouse.customers",
    regions: list = ["eu", "us", "apac", "latam"],  # noqa: B006 -- data, never mutated
    name: str = "churn",
    endpoint: str = "churn",
    channels: list = ["log"],  # noqa: B006
) -> None:
    """Retrain per region, upload the best, canary it, and promote it once approved."""
    done = summary(title="retrain", endpoint=endpoint)
    with ExitHandler(done):
        rows = extract(table=table)
        parts = split(data=rows.outputs["rows"])
        with ParallelFor(regions) as region:
            fit = train(data=parts.outputs["train"], region=region)
        best = pick_best(regions=regions).after(fit)
        candidate = upload_model(path=best.output, name=name, baseline=table)
        check = evaluate_model(
            model=candidate.output, data=table, label_column="churned", against=f"{name}@prod"
        )
        with If(check.outputs["passed"] == True):  # noqa: E712
            canary = deploy_model(endpoint=endpoint, model=candidate.output, traffic=10)
            health = check_endpoint(
                endpoint=endpoint, model=candidate.output, max_error_rate=0.05, window_seconds=600
            ).after(canary)
            decision = approval(message="Promote the retrained model?").after(health)
            with If(decision.outputs["approved"] == True):  # noqa: E712
                full = deploy_model(endpoint=endpoint, model=candidate.output, traffic=100)
                promote_alias(model=candidate.output, alias="prod").after(full)
            with Else():
                send_alert(channels=channels, title="retrain rejected", text="kept prod")
        with Else():
            send_alert(channels=channels, title="retrain worse than prod", text="kept prod")


@pipeline(name="nightly-score")
def nightly_score(
    model: str = "churn@prod", output: str = "scored", monitor: str = "churn"
) -> None:
    """Score each customer segment, merge, and check the scores for drift."""
    jobs = [
        batch_predict(model=model, input=f"segments/{i:02d}", output=f"{output}/{i:02d}")
        for i in range(SEGMENTS)
    ]
    merged = merge(output=output, segments=SEGMENTS).after(*jobs)
    drift = check_drift(monitor=monitor, batch_job=merged.output)
    with If(drift.outputs["drifted"] == True):  # noqa: E712
        send_alert(channels=["log"], title="nightly scores drifted", text=merged.output)


@pipeline(name="drift-check")
def drift_check(monitor: str = "churn", threshold: float = 0.3) -> None:
    """Each feature's distance; an alert for every one over the threshold."""
    for i in range(FEATURES):
        distance = feature_distance(monitor=monitor, feature=f"f{i}")
        with If(distance.output > threshold):
            send_alert(channels=["log"], title=f"f{i} drifted", text=monitor)


@pipeline(name="promote")
def promote(
    model: str = "churn:2", production: str = "churn@prod", endpoint: str = "churn"
) -> None:
    """Evaluate, canary, ramp 10 -> 50 -> 100 with a health check and an approval at each."""
    check = evaluate_model(model=model, data="holdout.parquet", label_column="churned",
                           against=production)  # fmt: skip
    with If(check.outputs["passed"] == True):  # noqa: E712
        previous = None
        for traffic in (10, 50, 100):
            step = deploy_model(endpoint=endpoint, model=model, traffic=traffic)
            if previous is not None:
                step.after(previous)
            health = check_endpoint(
                endpoint=endpoint, model=model, max_error_rate=0.05, window_seconds=600
            ).after(step)
            previous = approval(message=f"Go on from {traffic}%?").after(health)
        promote_alias(model=model, alias="prod").after(previous)


PIPELINES: dict[str, Pipeline] = {p.name: p for p in (retrain, nightly_score, drift_check, promote)}
