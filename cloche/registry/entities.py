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
