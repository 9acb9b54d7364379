"""What the registry returns: plain data shared by the service, the API and both SDK transports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from cloche.signatures import Signature


class ModelVersion(BaseModel):
    name: str
    version: int
    framework: str
    sha256: str = Field(description="sha256 over the version's files and their hashes")
    size_bytes: int
    resident_bytes: int | None = Field(
        default=None,
        description="memory the loaded model takes, measured in a child process when it is "
        "first loaded for serving; null until then",
    )
    files: dict[str, dict[str, Any]] = Field(description="relative path -> {sha256, size}")
    signature: dict[str, Any]
    metrics: dict[str, Any] = {}
    labels: dict[str, str] = {}
    description: str = ""
    aliases: list[str] = []
    baseline: dict[str, Any] | None = None
    created_at: datetime
    created_by: str = ""

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    def parsed_signature(self) -> Signature:
        return Signature.from_dict(self.signature)


class ModelSummary(BaseModel):
    name: str
    description: str = ""
    latest_version: int
    version_count: int
    framework: str
    aliases: dict[str, int] = Field(default={}, description="alias -> version")
    labels: dict[str, str] = Field(default={}, description="labels of the newest version")
    created_at: datetime
    updated_at: datetime


class ModelDetail(ModelSummary):
    versions: list[ModelVersion]


class DeleteResult(BaseModel):
    name: str
    deleted_versions: list[int]
    model_deleted: bool


class ResidentModel(BaseModel):
    """A model a serving worker holds in memory (`cloche models loaded`)."""

    model: str
    version: int
    framework: str
    server: str = Field(description="the `cloche up` process the worker belongs to")
    worker: int = Field(description="the worker's process id")
    size_bytes: int | None = Field(description="memory counted against the worker's budget")
    pinned: int = Field(default=0, description="batches using the model right now")
    loads: int = Field(description="times this worker loaded the model")
    evictions: int = Field(description="times this worker evicted it to make room")
    last_used: datetime | None = None
    load_seconds: dict[str, float] = Field(
        default={}, description="the last load's stages: fetch, hash_check, deserialise, warm_up"
    )
    resident: bool = True
    last_error: str | None = Field(default=None, description="why the last load failed, if it did")

    @property
    def ref(self) -> str:
        return f"{self.model}:{self.version}"
