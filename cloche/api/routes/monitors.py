"""Monitors of endpoints, their runs, and the alerts they raise."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, File, Form, Query, Request, Response, UploadFile
from pydantic import BaseModel, Field

from cloche.alerts import notices
from cloche.alerts.masking import for_principal
from cloche.api.deps import Reader, SettingsDep, StoreDep, Writer, require
from cloche.api.paging import PageParams, items
from cloche.api.routes import UPLOAD, make_router
from cloche.api.uploads import stage_file
from cloche.auth.roles import Permission, Principal
from cloche.batch import service as batch_service
from cloche.batch.places import Places
from cloche.batch.spec import JobSpec
from cloche.monitoring import baselines, feedback, history, listing, runs, service
from cloche.monitoring.entities import (
    Alert,
    Baseline,
    FeedbackResult,
    Monitor,
    MonitorConfig,
    MonitorRun,
)
from cloche.monitoring.history import FeatureHistogram, FeatureHistory

router = make_router("", "monitoring")
Deployer = Annotated[Principal, Depends(require(Permission.DEPLOY))]
Predictor = Annotated[Principal, Depends(require(Permission.PREDICT))]


class MonitorRequest(BaseModel):
    endpoint: str = Field(description="the endpoint whose traffic is watched")
    name: str | None = Field(default=None, description="default: the endpoint's name")
    config: MonitorConfig = MonitorConfig()


@router.post("/monitors", status_code=201)
def create_monitor(
    principal: Deployer, store: StoreDep, settings: SettingsDep, body: MonitorRequest
) -> Monitor:
    """Watch an endpoint for skew, drift, data quality and health on a schedule."""
    return for_principal(
        principal,
        service.create_monitor(
            store,
            endpoint=body.endpoint,
            name=body.name,
            config=body.config,
            actor=principal.actor,
            egress=settings.egress.policy(),
        ),
    )


@router.get("/monitors")
def list_monitors(
    principal: Reader,
    store: StoreDep,
    page: PageParams,
    request: Request,
    response: Response,
    endpoint: str | None = None,
) -> list[Monitor]:
    """List monitors (webhook URLs show only their host unless the caller is an admin).

    Sort keys: name (default), created, next_run."""
    monitors = listing.page_monitors(store, page, endpoint=endpoint)
    return for_principal(principal, items(monitors, request, response))


@router.get("/monitors/{name}")
def get_monitor(principal: Reader, store: StoreDep, name: str) -> Monitor:
    """Show a monitor's configuration and schedule."""
    return for_principal(principal, service.get_monitor(store, name))


@router.get("/monitors/{name}/runs")
def list_runs(
    principal: Reader,
    store: StoreDep,
    name: str,
    limit: Annotated[int, Query(ge=1, le=500)] = 20,
) -> list[MonitorRun]:
    """A monitor's runs, newest first, each with every feature's value, threshold and verdict."""
    return for_principal(principal, service.list_runs(store, name, limit=limit))


@router.get("/monitors/{name}/features/{feature}/history")
def feature_history(
    _: Reader, store: StoreDep, name: str, feature: str, limit: int = 200
) -> FeatureHistory:
    """A feature's skew and drift per run (oldest first) against each run's thresholds."""
    return history.feature_history(store, name, feature, limit=limit)


@router.get("/monitors/{name}/features/{feature}/histogram")
def feature_histogram(
    _: Reader, store: StoreDep, name: str, feature: str, run: int | None = None
) -> FeatureHistogram:
    """A feature's baseline and window shares over the same bins, as a run (default: the
    latest) stored them."""
    return history.feature_histogram(store, name, feature, run=run)


@router.post("/monitors/{name}/run")
def run_monitor(
    principal: Deployer,
    store: StoreDep,
    settings: SettingsDep,
    name: str,
    batch_job: Annotated[
        str | None,
        Query(description="compare this finished batch job with its version's baseline instead"),
    ] = None,
) -> MonitorRun:
    """Run a monitor now over the window that ends now (alerts included), or over a finished
    batch job's inputs and predictions (`?batch_job=bj_...`)."""
    if batch_job is not None:
        # The server reads the job's files for the caller: only inside the allowed folders,
        # as for jobs sent over the API.
        job = batch_service.get_job(store, batch_job)
        Places.from_settings(settings).check_spec(JobSpec.from_dict(job.spec))
    return for_principal(
        principal, runs.run_monitor(store, name, settings=settings, batch_job=batch_job)
    )


@router.post("/monitors/{name}/pause")
def pause_monitor(principal: Deployer, store: StoreDep, name: str) -> Monitor:
    """Stop running on schedule."""
    return for_principal(principal, service.set_enabled(store, name, False, actor=principal.actor))


@router.post("/monitors/{name}/resume")
def resume_monitor(principal: Deployer, store: StoreDep, name: str) -> Monitor:
    """Run on schedule again, from one interval from now."""
    return for_principal(principal, service.set_enabled(store, name, True, actor=principal.actor))


@router.delete("/monitors/{name}", status_code=204)
def delete_monitor(principal: Deployer, store: StoreDep, name: str) -> Response:
    """Delete a monitor with its runs and alerts."""
    service.delete_monitor(store, name, actor=principal.actor)
    return Response(status_code=204)


@router.get("/alerts")
def list_alerts(
    principal: Reader,
    store: StoreDep,
    page: PageParams,
    request: Request,
    response: Response,
    state: str | None = None,
    monitor: str | None = None,
) -> list[Alert]:
    """Alerts, newest first (`?state=open`). Sort keys: opened (default), monitor, state."""
    alerts = listing.page_alerts(store, page, state=state, monitor=monitor)
    return for_principal(principal, items(alerts, request, response))


@router.get("/alerts/{alert_id}")
def get_alert(principal: Reader, store: StoreDep, alert_id: int) -> Alert:
    """One alert with its deliveries."""
    return for_principal(principal, service.get_alert(store, alert_id))


class NoticeRequest(BaseModel):
    channels: list[str] = Field(description="webhook:URL, webhook:env:VAR, email:ADDR or log")
    title: str = Field(description="one line, at most 200 characters")
    text: str = Field(default="", description="the message, at most 10,000 characters")


@router.post("/alerts/send")
def send_notice(
    principal: Deployer, store: StoreDep, settings: SettingsDep, body: NoticeRequest
) -> list[dict[str, Any]]:
    """Send a message to alert channels now (as a pipeline's send_alert step does); what
    happened on each channel. Webhooks go only where the server's egress policy allows."""
    found = notices.send_notice(
        store, settings, body.channels, body.title, body.text, actor=principal.actor
    )
    return [d.to_dict() for d in found]


@router.post("/alerts/{alert_id}/ack")
def ack_alert(principal: Deployer, store: StoreDep, alert_id: int) -> Alert:
    """Acknowledge: stays open while breached, but is not notified again."""
    return for_principal(principal, service.ack_alert(store, alert_id, actor=principal.actor))


class FeedbackRequest(BaseModel):
    labels: list[Any] = Field(
        description='ground truth, e.g. [{"request_id": "...", "label": 1}]; at most 10,000'
    )


@router.post("/endpoints/{name}/feedback")
def send_feedback(
    principal: Predictor, store: StoreDep, name: str, body: FeedbackRequest
) -> FeedbackResult:
    """Ground-truth labels for requests the endpoint answered (by request id), any time later.

    Ids not in the endpoint's payload log of the last 30 days are reported, not stored; a second
    label for a request replaces the first. Monitors grade the model with them.
    """
    return feedback.record_feedback(store, name, body.labels, actor=principal.actor)


@router.post("/baselines", status_code=201, openapi_extra=UPLOAD)
def create_baseline(
    principal: Writer,
    store: StoreDep,
    model: Annotated[str, Form(description="the version, e.g. churn:3 or churn@prod")],
    file: Annotated[UploadFile, File(description="a .parquet, .csv or .jsonl dataset")],
) -> Baseline:
    """Attach (or replace) the baseline dataset of a version and profile it now."""
    with stage_file(store, file) as path:
        found = baselines.create_baseline(store, ref=model, path=path, actor=principal.actor)
    return Baseline.model_validate(found)
