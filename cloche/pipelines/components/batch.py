"""Batch and monitoring steps: score a dataset with a version, and check a monitor for drift."""

from __future__ import annotations

from typing import NamedTuple

import cloche
from cloche.errors import StepFailed
from cloche.pipelines.component import component


class DriftCheck(NamedTuple):
    drifted: bool
    breaches: list  # type: ignore[type-arg]
    status: str


@component
def batch_predict(model: str, input: str, output: str, overwrite: bool = True) -> str:
    """Score ``input`` (a file or folder of Parquet, CSV or JSON lines) with the version
    ``model`` names into ``output``; returns the job's id. A job that does not succeed fails the
    step with its message."""
    with cloche.Client() as client:
        job = client.batch.run(model, input=input, output=output, overwrite=overwrite)
    print(f"{job.id} {job.state}: {job.message}")
    if job.state != "succeeded":
        raise StepFailed(f"batch job {job.id} {job.state}: {job.message}")
    return job.id


@component
def check_drift(monitor: str, batch_job: str = "") -> DriftCheck:
    """Run ``monitor`` now (over its window, or over ``batch_job``'s inputs and predictions
    against its version's baseline) and say whether anything crossed its threshold, which
    keys did (``drift:tenure``) and the run's status."""
    with cloche.Client() as client:
        run = client.monitors.run(monitor, batch_job=batch_job or None)
    print(f"monitor {monitor} run {run.id}: {run.status} {', '.join(run.breaches)}")
    if run.status == "failed":
        raise StepFailed(f"monitor {monitor} run {run.id} failed: {run.message}")
    return DriftCheck(run.status == "breached", list(run.breaches), run.status)
