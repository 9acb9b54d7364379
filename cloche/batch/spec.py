"""What a batch job is asked to do, what it scores with, and what it reports: plain data shared by
the job service (which stores it) and the engines (which execute it)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

OutputFormat = Literal["parquet", "jsonl", "csv"]
Engine = Literal["local", "ray"]
FinalState = Literal["succeeded", "partially_succeeded", "failed", "cancelled"]

DEFAULT_CHUNK_ROWS = 250_000
DEFAULT_MAX_ERROR_RATE = 0.05


@dataclass(frozen=True)
class JobSpec:
    """The user's request, as given to `cloche batch run` (model reference aside)."""

    input: str  # a file, a folder, a glob or an fsspec URL
    output: str  # a local folder
    input_format: str | None = None  # csv | jsonl | parquet; None: from the file names
    output_format: OutputFormat = "parquet"
    id_column: str | None = None
    passthrough: tuple[str, ...] = ()
    workers: int = 0  # 0: one per core
    chunk_rows: int = DEFAULT_CHUNK_ROWS  # rows per checkpointed chunk (= per output file)
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    overwrite: bool = False
    engine: Engine = "local"  # "ray": on the cluster of CLOCHE_BATCH__RAY_ADDRESS, a setting

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["passthrough"] = list(self.passthrough)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        # Unknown keys are dropped: specs stored before a field was removed (ray_address, now
        # a server setting) still load.
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["passthrough"] = tuple(known.get("passthrough") or ())
        return cls(**known)


@dataclass(frozen=True)
class ModelSource:
    """The resolved model version: where its verified files are and what it expects."""

    ref: str  # name:version
    framework: str
    sha256: str
    artifact_dir: str  # a local folder whose files' hashes were checked
    signature: dict[str, Any]


@dataclass
class Progress:
    rows_total: int
    chunks_total: int
    rows_done: int = 0
    chunks_done: int = 0
    error_rows: int = 0
    started: float = field(default_factory=time.monotonic)
    rows_at_start: int = 0  # rows already done when this run began (a resume)

    @property
    def elapsed_s(self) -> float:
        return max(time.monotonic() - self.started, 1e-9)

    @property
    def rows_per_s(self) -> float:
        return (self.rows_done - self.rows_at_start) / self.elapsed_s

    @property
    def eta_s(self) -> float | None:
        rate = self.rows_per_s
        return (self.rows_total - self.rows_done) / rate if rate > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows_total": self.rows_total,
            "rows_done": self.rows_done,
            "chunks_total": self.chunks_total,
            "chunks_done": self.chunks_done,
            "error_rows": self.error_rows,
            "rows_per_s": round(self.rows_per_s, 1),
            "eta_s": None if self.eta_s is None else round(self.eta_s, 1),
        }


@dataclass
class JobOutcome:
    state: FinalState
    rows_total: int
    rows_scored: int
    error_rows: int
    output_files: list[str]
    manifest_path: str
    message: str = ""
