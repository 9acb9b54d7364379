"""What an export returns: where the bundle went, its manifest, and how to install and serve it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

ExportFormat = Literal["bundle", "onnx"]


class ExportResult(BaseModel):
    model: str = Field(description="the exported version, e.g. churn:1")
    out: Path
    format: ExportFormat
    runtime: str = Field(description='"onnx", or the native framework the bundle runs')
    manifest: dict[str, Any] = Field(description="manifest.json as written")
    commands: list[str] = Field(
        default=[], description="the two commands, run in the bundle folder, to install and serve"
    )

    @property
    def parity(self) -> dict[str, Any] | None:
        parity: dict[str, Any] | None = self.manifest.get("parity")
        return parity

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        files: dict[str, dict[str, Any]] = self.manifest["files"]
        return files
