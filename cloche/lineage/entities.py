"""What a lineage query returns: plain data shared by the CLI, SDK and REST."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

SUBJECT_KINDS = ("model_version", "endpoint", "batch_job", "artifact")


class StepInput(BaseModel):
    name: str
    value: Any = None
    source: str = Field(description="constant, parameter NAME, output NAME of STEP, loop item")
    made_by: StepOrigin | None = Field(default=None, description="the step that made it")


class StepOrigin(BaseModel):
    """A pipeline step that made or changed the subject, with its inputs and their makers."""

    run_id: str
    pipeline: str
    step: str = Field(description="STEP, or STEP[N] for a loop item")
    relation: str = Field(description="created, alias, deployed, traffic, or output")
    target: str = Field(default="", description="the alias, version deployed, split or output")
    cached_from: str | None = Field(default=None, description="the run its outputs came from")
    inputs: list[StepInput] = []
    repeated: bool = Field(default=False, description="shown in full elsewhere in this answer")


class Product(BaseModel):
    """Something the subject went on to make or feed: a step that took it as an input, a
    version it put on an endpoint, a batch job that scored with it, and what each of those made."""

    kind: str = Field(description="step, model_version, endpoint, batch_job, alias or output")
    id: str
    relation: str
    run_id: str | None = None
    step: str | None = None
    made: list[Product] = []
    repeated: bool = Field(default=False, description="shown in full elsewhere in this answer")


class Lineage(BaseModel):
    ref: str = Field(description="the reference asked for, e.g. churn@prod")
    kind: str = Field(description=", ".join(SUBJECT_KINDS))
    id: str = Field(description="what it resolved to, e.g. churn:3")
    made_by: list[StepOrigin] = []
    made: list[Product] = []
    note: str = Field(default="", description="why there is no pipeline behind it, if none is")
