"""Approvals: a step that waits until someone allowed to deploy approves or rejects it.

    from cloche.pipelines.components import approval

    decision = approval(message="promote churn:7 to 100%?", timeout_seconds=3600)
    with If(decision.outputs["approved"] == True): ...

The step is ``waiting`` (and its run too) until ``cloche pipelines approve RUN STEP`` (or
``--reject``) records a decision; who decided is on the step's outputs and in the audit log. No
decision within the timeout fails the step.
"""

from __future__ import annotations

import time
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from cloche import audit
from cloche.errors import NotWaitingForApproval, Timeout
from cloche.pipelines import records
from cloche.pipelines.component import Component
from cloche.pipelines.entities import PipelineRun, step_key
from cloche.pipelines.graph import PipelineGraph
from cloche.store.store import Store
from cloche.store.tables import PipelineDecisionRow

POLL_SECONDS = 0.5


class Decision(NamedTuple):
    approved: bool
    decided_by: str
    comment: str


def _approval(message: str, timeout_seconds: float = 86_400.0) -> Decision:
    """Wait for a person to approve or reject ``message``'s question."""
    # Only the interface is used: the runner sees the component's kind and waits in the store
    # (await_decision), so this body never runs.
    raise AssertionError("an approval step is run by the pipeline runner")


approval = Component(_approval, "approval")
approval.spec = approval.spec.model_copy(update={"kind": "approval"})


def decide(
    store: Store,
    run_id: str,
    step: str,
    *,
    approved: bool,
    actor: str,
    comment: str = "",
) -> PipelineRun:
    """Record the decision on ``step`` (``name`` or ``name[i]``) of a run waiting for it."""
    run = records.get_run(store, run_id)
    graph = PipelineGraph.model_validate(run.graph)
    name, iteration = step_key(step)
    latest = run.latest().get((name, iteration))
    is_approval = any(
        t.id == name and graph.components[t.component].kind == "approval" for t in graph.tasks
    )
    if not is_approval or latest is None or latest.state != "waiting":
        state = latest.state if latest else "not started"
        raise NotWaitingForApproval(
            f"step {step!r} of run {run.id} is not an approval waiting for a decision ({state})",
            hint=f"its steps: {', '.join(run.step_states()) or '(none)'}",
        )
    try:
        with store.transaction() as session:
            session.add(
                PipelineDecisionRow(
                    run_id=run.id,
                    step=name,
                    iteration=iteration,
                    approved=approved,
                    decided_by=actor,
                    comment=comment,
                )
            )
            audit.record(
                session,
                actor=actor,
                action="pipeline.approve" if approved else "pipeline.reject",
                resource_type="pipeline_run",
                resource=f"{run.id}/{step}",
                after={"approved": approved, "comment": comment},
            )
    except IntegrityError:
        raise NotWaitingForApproval(f"step {step!r} of run {run.id} was already decided") from None
    return records.get_run(store, run.id)


def await_decision(
    store: Store, run_id: str, step: str, iteration: int, *, timeout: float
) -> Decision:
    """Poll the store until the step is decided; Timeout after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    query = select(PipelineDecisionRow).where(
        PipelineDecisionRow.run_id == run_id,
        PipelineDecisionRow.step == step,
        PipelineDecisionRow.iteration == iteration,
    )
    while True:
        with store.transaction() as session:
            row = session.scalars(query).one_or_none()
            if row is not None:
                return Decision(row.approved, row.decided_by, row.comment)
        if time.monotonic() >= deadline:
            raise Timeout(
                f"no one approved or rejected step {step!r} within {timeout:g} s",
                hint="decide with `cloche pipelines approve RUN STEP` (or --reject) in time",
            )
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
