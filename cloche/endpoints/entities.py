"""What the endpoint service returns."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class Deployment(BaseModel):
    id: int
    model: str
    version: int
    framework: str
    traffic: int = Field(description="percent of live requests routed here (0-100)")
    shadow: bool = Field(description="receives a copy of live requests; its answers are logged")
    max_batch_size: int
    timeout_ms: int
    created_at: datetime

    @property
    def ref(self) -> str:
        return f"{self.model}:{self.version}"


class Endpoint(BaseModel):
    name: str
    description: str = ""
    log_sample_rate: float = Field(default=1.0, description="share of requests logged (0-1)")
    deployments: list[Deployment] = []
    created_at: datetime
    updated_at: datetime

    def traffic(self) -> dict[str, int]:
        return {d.ref: d.traffic for d in self.deployments if not d.shadow}
