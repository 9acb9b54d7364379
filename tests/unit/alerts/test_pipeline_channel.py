"""What a ``pipeline:NAME`` channel passes a pipeline: the alert's fields it declares, as text
where it takes a str."""

from __future__ import annotations

from datetime import UTC, datetime

from cloche.alerts.digest import AlertMessage, Breach
from cloche.alerts.pipeline_channel import alert_params, fit_params
from cloche.pipelines.graph import ParamSpec, PipelineGraph

NOW = datetime(2030, 1, 1, tzinfo=UTC)
MESSAGE = AlertMessage(
    monitor="churn-drift",
    endpoint="churn",
    run_at=NOW,
    window_start=NOW,
    window_end=NOW,
    breaches=(Breach("drift:spend", 0.5, 0.3), Breach("drift:age", 0.4, 0.3)),
)


def graph(**params: str) -> PipelineGraph:
    return PipelineGraph(name="retrain", params={k: ParamSpec(type=t) for k, t in params.items()})


def test_only_the_declared_params_are_passed_in_their_types() -> None:
    offered = alert_params(MESSAGE, 7)
    fitted = fit_params(graph(alert_id="int", breached="list", values="dict"), offered)
    assert fitted == {
        "alert_id": 7,
        "breached": ["drift:spend", "drift:age"],
        "values": {"drift:spend": 0.5, "drift:age": 0.4},
    }


def test_a_str_param_gets_text() -> None:
    fitted = fit_params(
        graph(alert_id="str", breached="str", values="str", monitor="str"), alert_params(MESSAGE, 7)
    )
    assert fitted == {
        "alert_id": "7",
        "breached": "drift:spend,drift:age",
        "values": '{"drift:spend": 0.5, "drift:age": 0.4}',
        "monitor": "churn-drift",
    }
