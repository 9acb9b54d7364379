"""Weekly scoring: score this week's customers with the version behind an alias, check the
scored rows against that version's baseline, and alert when they drifted.

Run it where `python examples/make_churn.py` wrote its files, on the server's CLOCHE_HOME, with
a monitor to judge drift by (any monitor: a batch job is compared with the baseline of the
version that scored it, under the monitor's thresholds):

    cloche models upload churn.joblib --name churn --baseline train.parquet --alias prod
    cloche endpoints create churn
    cloche monitors create churn --skew-threshold 0.3
    cloche pipelines run examples/pipelines/weekly_scoring.py -p channels='["webhook:env:HOOK"]'

Schedule it weekly once registered (`cloche pipelines register`).
"""

from __future__ import annotations

from cloche.pipelines import If, component, pipeline
from cloche.pipelines.components import batch_predict, check_drift, send_alert


@component
def drift_report(model: str, breaches: list[str], output: str) -> str:
    """The alert's text: what drifted, and where the scores are."""
    keys = ", ".join(breaches) or "(none named)"
    return f"Scoring with {model} drifted from its baseline: {keys}. Scores in {output}."


@pipeline(name="weekly-scoring")
def weekly_scoring(
    model: str = "churn@prod",
    monitor: str = "churn",
    input: str = "data/customers",
    output: str = "scored",
    channels: list = ["log"],  # noqa: B006 -- a pipeline's default is data, never mutated
) -> None:
    """Score ``input`` with ``model`` into ``output``; alert ``channels`` if it drifted."""
    job = batch_predict(model=model, input=input, output=output)
    drift = check_drift(monitor=monitor, batch_job=job.output)
    with If(drift.outputs["drifted"] == True):  # noqa: E712 -- a condition, not a Python test
        text = drift_report(model=model, breaches=drift.outputs["breaches"], output=output)
        send_alert(
            channels=channels, title="weekly scoring: the scored data drifted", text=text.output
        )
