"""The SDK's interface: each namespace is a Protocol both transports implement alike."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

# Types only: importing cloche must not import the store, Arrow or the frameworks.
if TYPE_CHECKING:
    import pyarrow as pa

    from cloche.audit import AuditEntry
    from cloche.auth.tokens import NewToken, TokenInfo
    from cloche.batch.entities import BatchJob, BatchSchedule
    from cloche.endpoints.entities import Endpoint
    from cloche.export.entities import ExportResult
    from cloche.logs.service import LogStats, ShadowAgreement
    from cloche.monitoring.entities import (
        Alert,
        FeedbackResult,
        Monitor,
        MonitorConfig,
        MonitorRun,
    )
    from cloche.registry.entities import DeleteResult, ModelDetail, ModelSummary, ModelVersion
    from cloche.runtimes.base import LoadedModel
    from cloche.store.artifacts import Progress

    OnProgress = Callable[[BatchJob], None] | None


class ModelsAPI(Protocol):
    def upload(
        self,
        path: str | Path,
        *,
        name: str,
        framework: str | None = None,
        sample: str | Path | None = None,
        baseline: str | Path | None = None,
        aliases: Sequence[str] = (),
        labels: Mapping[str, str] | None = None,
        metrics: Mapping[str, float] | None = None,
        description: str = "",
        progress: Progress | None = None,
    ) -> ModelVersion:
        """Register a model file or folder as the next version of ``name``."""
        ...

    def list(
        self, *, labels: Mapping[str, str] | None = None, search: str | None = None
    ) -> list[ModelSummary]:
        """Registered models, optionally those with versions carrying all ``labels``."""
        ...

    def get(self, name: str) -> ModelDetail:
        """A model with all its versions and aliases."""
        ...

    def show(self, ref: str) -> ModelVersion:
        """The version ``ref`` names: ``name`` (newest), ``name:3`` or ``name@prod``."""
        ...

    def alias(self, ref: str, alias: str) -> ModelVersion:
        """Point ``alias`` at the version ``ref`` names."""
        ...

    def remove_alias(self, name: str, alias: str) -> None:
        """Remove an alias from a model."""
        ...

    def attach_baseline(self, ref: str, path: str | Path) -> dict[str, Any]:
        """Attach (or replace) the baseline dataset of a version."""
        ...

    def delete(self, ref: str) -> DeleteResult:
        """Delete a model (bare name) or one version (``name:3``, ``name@alias``)."""
        ...

    def load(self, ref: str) -> LoadedModel:
        """Load a version into this process (hashes verified) and return its runtime model."""
        ...

    def export(
        self,
        ref: str,
        out: str | Path,
        *,
        format: str = "bundle",
        native: bool = False,
        with_wheels: bool = False,
        slim: bool = True,
        platform: str | None = None,
        overwrite: bool = False,
    ) -> ExportResult:
        """Write the version as an edge bundle (or, with ``format="onnx"``, one ONNX file) to
        the local folder ``out``: converted to ONNX and parity checked unless ``native``.
        With wheels, ``slim=False`` keeps every wheel as the index served it (by default a
        wheel holding a library its runtime never loads, onnxruntime's, is rewritten without it
        and versioned ``+slim``).

        In-process only: it reads the registry's files and baseline where the store is. Over
        HTTP it raises InvalidInput; run it on the server's machine, without a URL.
        """
        ...


class BatchAPI(Protocol):
    """Batch prediction. ``spec`` keywords are those of `cloche batch run`: input, output,
    input_format, output_format, id_column, passthrough, workers, chunk_rows, max_error_rate,
    overwrite, engine (``"ray"`` runs on the cluster of the CLOCHE_BATCH__RAY_ADDRESS setting).

    Over HTTP, and for jobs queued for `cloche up` or scheduled, paths must lie in the
    server's CLOCHE_BATCH__ALLOWED_DIRS (links resolved) or under CLOCHE_BATCH__ALLOWED_URLS
    (DestinationRefused otherwise); a job run in-process in the foreground is not confined."""

    def run(
        self,
        model: str,
        *,
        input: str,
        output: str,
        on_progress: OnProgress = None,
        **spec: Any,
    ) -> BatchJob:
        """Run a job to its end and return it, whatever state it ended in.

        In-process the job runs here; over HTTP the server runs it and this polls it.
        """
        ...

    def submit(self, model: str, *, input: str, output: str, **spec: Any) -> BatchJob:
        """Queue a job for `cloche up` to run; returns at once."""
        ...

    def wait(
        self,
        job_id: str,
        *,
        on_progress: OnProgress = None,
        timeout: float | None = None,
    ) -> BatchJob:
        """Poll a job until it ends."""
        ...

    def list(
        self, *, state: str | None = None, schedule_id: str | None = None, limit: int = 50
    ) -> list[BatchJob]: ...

    def get(self, job_id: str) -> BatchJob: ...

    def cancel(self, job_id: str) -> BatchJob: ...

    def resume(
        self,
        job_id: str,
        *,
        wait: bool = True,
        on_progress: OnProgress = None,
    ) -> BatchJob:
        """Continue a stopped job from its last finished chunk."""
        ...

    def schedule(
        self, model: str, *, cron: str, input: str, output: str, **spec: Any
    ) -> BatchSchedule:
        """Run the job on a cron schedule (UTC) in `cloche up`, each run in a dated folder."""
        ...

    def schedules(self) -> builtins.list[BatchSchedule]: ...

    def get_schedule(self, schedule_id: str) -> BatchSchedule: ...

    def pause_schedule(self, schedule_id: str) -> BatchSchedule: ...

    def resume_schedule(self, schedule_id: str) -> BatchSchedule: ...

    def delete_schedule(self, schedule_id: str) -> None: ...


class MonitorsAPI(Protocol):
    def create(
        self,
        endpoint: str,
        *,
        name: str | None = None,
        config: MonitorConfig | dict[str, Any] | None = None,
        **options: Any,
    ) -> Monitor:
        """Watch ``endpoint``; ``options`` are MonitorConfig fields (every_s, window_s,
        skew_threshold, drift_threshold, feature_thresholds, metric, alerts, cooldown_s, ...)."""
        ...

    def list(self, *, endpoint: str | None = None) -> builtins.list[Monitor]: ...

    def get(self, name: str) -> Monitor: ...

    def runs(self, name: str, *, limit: int = 20) -> builtins.list[MonitorRun]:
        """The monitor's runs, newest first, with each feature's value, threshold, verdict."""
        ...

    def run(self, name: str, *, batch_job: str | None = None) -> MonitorRun:
        """Run it now over the window that ends now; alerts included. With ``batch_job`` (an
        id or unique prefix), compare that finished batch job's inputs and predictions with
        its model version's baseline instead, under this monitor's thresholds and alerts."""
        ...

    def pause(self, name: str) -> Monitor: ...

    def resume(self, name: str) -> Monitor: ...

    def delete(self, name: str) -> None: ...

    def feedback(self, endpoint: str, labels: Sequence[Mapping[str, Any]]) -> FeedbackResult:
        """Ground-truth labels, ``[{"request_id": ..., "label": ...}]`` (at most 10,000), for
        requests ``endpoint`` answered; monitors grade the model with them. Ids not in the
        payload log of the last 30 days are returned in ``unknown_request_ids``, not stored;
        a second label for a request replaces the first."""
        ...


class AlertsAPI(Protocol):
    def list(
        self, *, state: str | None = None, monitor: str | None = None, limit: int = 100
    ) -> builtins.list[Alert]: ...

    def get(self, alert_id: int) -> Alert: ...

    def ack(self, alert_id: int) -> Alert:
        """Acknowledge: the alert stays open while breached but is not notified again."""
        ...


class EndpointsAPI(Protocol):
    def create(self, name: str, *, description: str = "", log_sample_rate: float = 1.0) -> Endpoint:
        """Create an endpoint with no deployments; ``log_sample_rate`` of requests are logged."""
        ...

    def update(
        self, name: str, *, description: str | None = None, log_sample_rate: float | None = None
    ) -> Endpoint:
        """Change an endpoint's description or payload-log sampling rate."""
        ...

    def list(self) -> list[Endpoint]: ...

    def get(self, name: str) -> Endpoint: ...

    def delete(self, name: str) -> None: ...

    def deploy(
        self,
        name: str,
        ref: str,
        *,
        traffic: int | None = None,
        shadow: bool = False,
        max_batch_size: int = 64,
        timeout_ms: int = 10_000,
    ) -> Endpoint:
        """Deploy a model version; with ``traffic`` N the others scale down to 100-N."""
        ...

    def traffic(self, name: str, split: Mapping[str, int]) -> Endpoint:
        """Set the split, e.g. ``{"churn:3": 90, "churn:4": 10}``; shares sum to 100."""
        ...

    def undeploy(self, name: str, ref: str) -> Endpoint: ...


class LogsAPI(Protocol):
    def read(
        self,
        endpoint: str,
        *,
        since: str | datetime | None = "1h",
        until: str | datetime | None = None,
        limit: int = 1000,
    ) -> pa.Table:
        """An endpoint's logged requests as an Arrow table (inputs/outputs as JSON text)."""
        ...

    def stats(self) -> LogStats:
        """Rows logged, and rows that could not be logged (a full disk), across workers."""
        ...

    def shadow_agreement(
        self, endpoint: str, *, since: str | datetime | None = "24h"
    ) -> list[ShadowAgreement]:
        """Per shadow deployment: requests compared with the live answer, and how many agreed."""
        ...


class TokensAPI(Protocol):
    def create(self, *, role: str, name: str = "") -> NewToken: ...

    def list(self) -> list[TokenInfo]: ...

    def revoke(self, token_id: str) -> TokenInfo: ...


class AuditAPI(Protocol):
    def list(
        self, *, resource_type: str | None = None, resource: str | None = None, limit: int = 100
    ) -> list[AuditEntry]: ...
