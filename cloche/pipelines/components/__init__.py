"""Prebuilt serving components: each a thin call through the SDK, so a step does exactly what
the CLI does, with the same permission checks (a server's token, or this machine's home).

    from cloche.pipelines.components import upload_model, deploy_model, evaluate_model

Steps reach cloche the way ``cloche.Client()`` does: CLOCHE_URL and CLOCHE_TOKEN when set, else
CLOCHE_HOME in-process.
"""

from cloche.pipelines.approvals import approval
from cloche.pipelines.components.alerts import send_alert
from cloche.pipelines.components.batch import batch_predict, check_drift
from cloche.pipelines.components.evaluate import evaluate_model
from cloche.pipelines.components.health import check_endpoint
from cloche.pipelines.components.serving import (
    create_endpoint,
    deploy_model,
    promote_alias,
    set_traffic,
    upload_model,
)

__all__ = [
    "approval",
    "batch_predict",
    "check_drift",
    "check_endpoint",
    "create_endpoint",
    "deploy_model",
    "evaluate_model",
    "promote_alias",
    "send_alert",
    "set_traffic",
    "upload_model",
]
