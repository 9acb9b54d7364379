"""What a lineage REF names: a model version (``churn:3``, ``churn@prod``), an endpoint
(``churn``), a batch job (``bj_…``) or a step's artifact (``RUN/STEP/OUTPUT``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloche.batch.ids import find_row
from cloche.errors import (
    ArtifactNotFound,
    BatchJobNotFound,
    EndpointNotFound,
    InvalidReference,
    PipelineRunNotFound,
)
from cloche.registry.refs import parse_ref
from cloche.registry.service import resolve_version_row
from cloche.store.tables import BatchJobRow, EndpointRow, PipelineRunRow, PipelineStepRow

REF_HINT = (
    "a REF is a model version (churn:3, churn@prod), an endpoint name, a batch job id (bj_…) "
    "or a run's artifact (RUN/STEP/OUTPUT)"
)


def resolve(session: Session, ref: str) -> tuple[str, str]:
    """(kind, canonical id) of what ``ref`` names; a NotFound when it names nothing."""
    ref = ref.strip()
    if not ref:
        raise InvalidReference("an empty REF names nothing", hint=REF_HINT)
    if ref.startswith("pr_"):
        return "artifact", _artifact(session, ref)
    if ref.startswith("bj_"):
        missing = BatchJobNotFound(
            f"no batch job {ref!r}", hint="list jobs with `cloche batch list`"
        )
        return "batch_job", find_row(session, BatchJobRow, BatchJobRow.id, ref, missing=missing).id
    if ":" in ref or "@" in ref:
        version = resolve_version_row(session, parse_ref(ref))
        return "model_version", f"{version.model.name}:{version.version}"
    if session.scalar(select(EndpointRow.id).where(EndpointRow.name == ref)) is None:
        raise EndpointNotFound(f"no endpoint {ref!r} (a bare name is an endpoint)", hint=REF_HINT)
    return "endpoint", ref


def _artifact(session: Session, ref: str) -> str:
    run_id, _, rest = ref.partition("/")
    step, _, output = rest.partition("/")
    if not step or not output or "/" in output:
        raise InvalidReference(f"{ref!r} is not RUN/STEP/OUTPUT", hint=REF_HINT)
    missing = PipelineRunNotFound(
        f"no pipeline run {run_id!r}", hint="list runs with `cloche pipelines runs`"
    )
    run = find_row(session, PipelineRunRow, PipelineRunRow.id, run_id, missing=missing)
    outputs = step_outputs(session, run.id, step)
    if output not in outputs:
        made = ", ".join(sorted(outputs)) or "nothing"
        raise ArtifactNotFound(
            f"step {step!r} of run {run.id} has no output {output!r} (it made: {made})",
            hint=f"see the run's steps with `cloche pipelines show {run.id}`",
        )
    return f"{run.id}/{step}/{output}"


def last_attempt(session: Session, run_id: str, label: str) -> PipelineStepRow | None:
    """The newest attempt of ``label`` (STEP or STEP[N]) in the run, if it ran."""
    name, iteration = split_label(label)
    query = (
        select(PipelineStepRow)
        .where(
            PipelineStepRow.run_id == run_id,
            PipelineStepRow.step == name,
            PipelineStepRow.iteration == iteration,
        )
        .order_by(PipelineStepRow.attempt.desc())
        .limit(1)
    )
    return session.scalars(query).one_or_none()


def step_outputs(session: Session, run_id: str, label: str) -> dict[str, Any]:
    row = last_attempt(session, run_id, label)
    return dict(row.outputs) if row is not None else {}


def split_label(label: str) -> tuple[str, int]:
    """``train`` as (train, -1), ``train[2]`` as (train, 2); a malformed label names no step."""
    name, bracket, rest = label.partition("[")
    if bracket and rest.endswith("]") and rest[:-1].isdigit():
        return name, int(rest[:-1])
    return label, -1
