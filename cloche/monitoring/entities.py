"""What the monitoring service returns, and a monitor's configuration (stored as JSON)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from cloche.durations import MAX_DURATION_S

NumericMetric = Literal["js", "psi", "ks", "wasserstein"]
CategoricalMetric = Literal["linf", "js", "psi"]


class QualityThresholds(BaseModel):
    """Data-quality rules per window: the share of rows allowed to break each (None: off)."""

    missing_rate: float | None = Field(default=0.2, ge=0, le=1)
    mismatch_rate: float | None = Field(default=0.05, ge=0, le=1)
    out_of_range_rate: float | None = Field(default=0.2, ge=0, le=1)
    unseen_category_rate: float | None = Field(default=0.2, ge=0, le=1)


class HealthThresholds(BaseModel):
    """Operational health per window, from the payload log (None: report only)."""

    p50_ms: float | None = Field(default=None, gt=0)
    p95_ms: float | None = Field(default=None, gt=0)
    p99_ms: float | None = Field(default=None, gt=0)
    error_rate: float | None = Field(default=0.05, ge=0, le=1)
    min_rows_per_s: float | None = Field(default=None, ge=0)


class PerformanceThresholds(BaseModel):
    """Model performance per window, from ground-truth labels sent as feedback (None: off).

    ``max_drop`` is how far a metric may fall below (or, for losses and errors, rise above)
    the value recorded on the model version, in the metric's own units; it applies to every
    metric the version recorded. With fewer than ``min_labelled_rows`` labelled predictions in
    a window, performance is reported but gives no verdict.
    """

    min_accuracy: float | None = Field(default=None, ge=0, le=1)
    min_precision: float | None = Field(default=None, ge=0, le=1)
    min_recall: float | None = Field(default=None, ge=0, le=1)
    min_f1: float | None = Field(default=None, ge=0, le=1)
    min_roc_auc: float | None = Field(default=None, ge=0, le=1)
    max_log_loss: float | None = Field(default=None, ge=0)
    max_mae: float | None = Field(default=None, ge=0)
    max_rmse: float | None = Field(default=None, ge=0)
    min_r2: float | None = None
    max_drop: float | None = Field(default=0.05, ge=0)
    min_labelled_rows: int = Field(default=30, ge=1)


class MonitorConfig(BaseModel):
    # At most MAX_DURATION_S (100 years): a longer one overflows the dates computed from it.
    every_s: int = Field(
        default=3600, ge=10, le=MAX_DURATION_S, description="how often the monitor runs"
    )
    window_s: int = Field(
        default=3600, ge=10, le=MAX_DURATION_S, description="the traffic each run looks at"
    )
    metric: NumericMetric = Field(default="js", description="distance for numeric features")
    categorical_metric: CategoricalMetric = "linf"
    skew_threshold: float = Field(default=0.3, ge=0)
    drift_threshold: float = Field(default=0.3, ge=0)
    feature_thresholds: dict[str, float] = Field(
        default={}, description="per-feature threshold, for skew and drift alike"
    )
    quality: QualityThresholds = QualityThresholds()
    health: HealthThresholds = HealthThresholds()
    performance: PerformanceThresholds = PerformanceThresholds()
    min_rows: int = Field(default=50, ge=1, description="fewer rows in a window: no verdict")
    alerts: list[str] = Field(
        default=[],
        description="webhook:URL, webhook:env:VAR (the URL read from $VAR), email:ADDR or log",
    )
    cooldown_s: int = Field(default=6 * 3600, ge=0, le=MAX_DURATION_S)
    min_breaches: int = Field(default=1, ge=1, description="breaches needed in the last of_runs")
    of_runs: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _reachable_policy(self) -> MonitorConfig:
        if self.min_breaches > self.of_runs:  # no run could ever open an alert
            raise ValueError(
                f"min_breaches ({self.min_breaches}) cannot exceed of_runs ({self.of_runs})"
            )
        return self


class Monitor(BaseModel):
    id: str
    name: str
    endpoint: str
    config: MonitorConfig
    enabled: bool
    next_run_at: datetime
    last_run_at: datetime | None = None
    created_at: datetime
    created_by: str = ""


class MonitorRun(BaseModel):
    id: int
    monitor: str
    started_at: datetime
    finished_at: datetime | None = None
    window_start: datetime
    window_end: datetime
    status: Literal["ok", "breached", "no_data", "failed"]
    rows: int
    breaches: list[str] = Field(
        default=[], description="keys such as skew:tenure (batch:skew:tenure for a batch job)"
    )
    results: dict[str, Any] = Field(
        default={},
        description="features (skew, drift, quality: value, threshold, breached, definition), "
        "health, alerts (opened, renotified, resolved, deliveries); a batch job's run: "
        "batch_job, source, predictions and not_applicable (drift, health, performance)",
    )
    message: str = ""


class Alert(BaseModel):
    id: int
    monitor: str
    key: str
    state: Literal["open", "resolved"]
    opened_at: datetime
    last_notified_at: datetime | None = None
    resolved_at: datetime | None = None
    acked_at: datetime | None = None
    acked_by: str | None = None
    value: float | None = None
    threshold: float | None = None
    details: dict[str, Any] = {}
    deliveries: list[dict[str, Any]] = []


class FeedbackResult(BaseModel):
    """What became of a batch of ground-truth labels."""

    accepted: int = Field(description="labels stored (new or replacing an earlier one)")
    replaced: int = Field(description="of those, labels that replaced an earlier label")
    unknown_request_ids: list[str] = Field(
        default=[], description="request ids not in the endpoint's payload log: not stored"
    )


class Baseline(BaseModel):
    """A version's baseline dataset as stored and profiled (``cloche baselines create``)."""

    model: str = Field(description="the version it is the baseline of, e.g. churn:3")
    file: str
    format: str
    rows: int
    columns: list[str]
    sha256: str
    size: int
    profile: dict[str, Any] | None = Field(
        default=None, description="per feature the signature names: counts and distribution"
    )
