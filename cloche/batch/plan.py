"""The plan of a batch job: its input files, its chunks and the columns it reads.

Global row numbers run across the files in sorted order. A chunk is at most ``chunk_rows`` rows of
one file (chunks never straddle files) and becomes one output file, so the plan fixes the output
names. It is saved as ``<output>/.cloche-job/plan.json`` and a resumed job reads it back, which is
what makes a resumed job's output identical to an uninterrupted one's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from cloche.batch import sources
from cloche.batch.places import check_absolute
from cloche.batch.schema import ColumnPlan
from cloche.batch.sources import InputFile
from cloche.batch.spec import JobSpec, ModelSource
from cloche.errors import BatchOutputExists, BatchResumeMismatch, InvalidInput

PLAN_VERSION = 1
JOB_DIR = ".cloche-job"
PLAN_FILE = "plan.json"
EXTENSIONS = {"parquet": "parquet", "jsonl": "jsonl", "csv": "csv"}
# What a resumed job must share with its plan: anything that changes chunks or output files.
LAYOUT_FIELDS = ("input", "input_format", "output_format", "chunk_rows", "id_column", "passthrough")
OUTPUT_FORMATS = ("parquet", "jsonl", "csv")


@dataclass(frozen=True)
class Chunk:
    index: int
    file: int  # index into JobPlan.files
    start: int  # first row within the file
    stop: int  # one past the last row within the file
    first_row: int  # global row number of ``start``

    @property
    def rows(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Task:
    """Work for one worker: a Parquet chunk, or all the pending chunks of one CSV/JSONL file."""

    id: int
    file: int
    chunks: tuple[int, ...]


@dataclass
class JobPlan:
    output_dir: str
    input_format: str
    output_format: str
    files: list[InputFile]
    chunks: list[Chunk]
    columns: ColumnPlan
    model_ref: str
    model_sha256: str
    framework: str
    spec: dict[str, Any]  # the JobSpec the plan was made for
    created: str = field(default_factory=lambda: utc_now())

    @property
    def rows_total(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def chunks_total(self) -> int:
        return len(self.chunks)

    def prediction_name(self, index: int) -> str:
        ext = EXTENSIONS[self.output_format]
        return f"predictions-{index:05d}-of-{self.chunks_total:05d}.{ext}"

    def error_name(self, index: int) -> str:
        return f"errors-{index:05d}-of-{self.chunks_total:05d}.jsonl"

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan_version": PLAN_VERSION,
            "output_dir": self.output_dir,
            "input_format": self.input_format,
            "output_format": self.output_format,
            "files": [f.to_dict() for f in self.files],
            "chunks": [[c.file, c.start, c.stop, c.first_row] for c in self.chunks],
            "columns": self.columns.to_dict(),
            "model": {"ref": self.model_ref, "sha256": self.model_sha256},
            "framework": self.framework,
            "spec": self.spec,
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobPlan:
        chunks = [Chunk(i, *row) for i, row in enumerate(data["chunks"])]
        return cls(
            output_dir=data["output_dir"],
            input_format=data["input_format"],
            output_format=data["output_format"],
            files=[InputFile.from_dict(f) for f in data["files"]],
            chunks=chunks,
            columns=ColumnPlan.from_dict(data["columns"]),
            model_ref=data["model"]["ref"],
            model_sha256=data["model"]["sha256"],
            framework=data["framework"],
            spec=data["spec"],
            created=data["created"],
        )


def build_chunks(files: list[InputFile], chunk_rows: int) -> list[Chunk]:
    """Cut each file into chunks of ``chunk_rows`` rows (the last of a file may be shorter)."""
    chunks: list[Chunk] = []
    first_row = 0
    for i, file in enumerate(files):
        for start in range(0, file.rows, chunk_rows):
            stop = min(start + chunk_rows, file.rows)
            chunks.append(Chunk(len(chunks), i, start, stop, first_row + start))
        first_row += file.rows
    return chunks


def tasks_for(plan: JobPlan, done: set[int]) -> list[Task]:
    """The work left: a task per pending Parquet chunk, or per CSV/JSONL file with one pending.

    Parquet can seek to a chunk's row groups; text files can only be read from the start, so a
    file is one task that reads past its done chunks without scoring them.
    """
    pending = [c for c in plan.chunks if c.index not in done]
    if plan.input_format == "parquet":
        return [Task(i, c.file, (c.index,)) for i, c in enumerate(pending)]
    by_file: dict[int, list[int]] = {}
    for c in pending:
        by_file.setdefault(c.file, []).append(c.index)
    return [Task(i, f, tuple(ids)) for i, (f, ids) in enumerate(by_file.items())]


def job_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / JOB_DIR


def plan_path(output_dir: str | Path) -> Path:
    """Where a job writing to ``output_dir`` keeps its plan (a resumable job has one)."""
    return job_dir(output_dir) / PLAN_FILE


def save_plan(plan: JobPlan) -> Path:
    """Write the plan atomically: a job killed while saving it has no plan, not half of one."""
    folder = job_dir(plan.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / PLAN_FILE
    tmp = folder / f"{PLAN_FILE}.tmp-{os.getpid()}"
    with tmp.open("wb") as fh:
        fh.write(orjson.dumps(plan.to_dict(), option=orjson.OPT_INDENT_2))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def load_plan(output_dir: str | Path) -> JobPlan:
    path = plan_path(output_dir)
    if not path.is_file():
        raise InvalidInput(
            f"there is no batch job to resume in {output_dir}: {path} does not exist",
            hint="start the job without --resume",
        )
    data = orjson.loads(path.read_bytes())
    if data.get("plan_version") != PLAN_VERSION:
        raise InvalidInput(
            f"{path} was written by another version of cloche",
            hint="start the job again without --resume (with --overwrite)",
        )
    return JobPlan.from_dict(data)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def check_spec(spec: JobSpec) -> None:
    """Refuse settings no job can run with, naming each (as the API field and the CLI option)."""
    problems = []
    if spec.input_format is not None and spec.input_format not in OUTPUT_FORMATS:
        problems.append(f"input_format {spec.input_format!r} is not one of {_listed()}")
    if spec.output_format not in OUTPUT_FORMATS:
        problems.append(f"output_format {spec.output_format!r} is not one of {_listed()}")
    if spec.chunk_rows < 1:
        problems.append(f"chunk_rows must be at least 1, not {spec.chunk_rows}")
    if spec.workers < 0:
        problems.append(f"workers must be 0 (one per core) or more, not {spec.workers}")
    if not 0 <= spec.max_error_rate <= 1:
        problems.append(f"max_error_rate must be between 0 and 1, not {spec.max_error_rate}")
    if spec.engine not in ("local", "ray"):
        problems.append(f"engine {spec.engine!r} is not one of local, ray")
    problems += [
        f"{name} is empty" for name in ("input", "output") if not getattr(spec, name).strip()
    ]
    if problems:
        raise InvalidInput(
            "; ".join(problems), hint="see `cloche batch run --help` (options use dashes)"
        )
    check_absolute(spec)


def _listed() -> str:
    return ", ".join(OUTPUT_FORMATS)


def output_folder(output: str) -> Path:
    """The output as an absolute local folder; URLs are refused (for now)."""
    if "://" in output:
        raise InvalidInput(
            f"the output must be a local folder, not a URL: {output}",
            hint="write to a local folder, then copy the files where they are needed",
        )
    return Path(output).expanduser().resolve()


def _is_own(name: str) -> bool:
    return name == JOB_DIR or name.startswith(("predictions-", "errors-", "manifest.json"))


def output_to_replace(folder: Path, overwrite: bool) -> list[Path]:
    """The files an overwrite removes; raise if the folder may not be written to."""
    if not folder.exists():
        return []
    if not folder.is_dir():
        raise InvalidInput(f"the output {folder} is a file, not a folder")
    entries = sorted(folder.iterdir())
    if entries and not overwrite:
        raise BatchOutputExists(
            f"the output folder {folder} is not empty",
            hint="pass --overwrite to replace an earlier job's output, --resume to finish it, "
            "or choose another folder",
        )
    foreign = [e.name for e in entries if not _is_own(e.name)]
    if foreign:
        shown = ", ".join(foreign[:5]) + (
            f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        )
        raise BatchOutputExists(
            f"the output folder {folder} holds files a batch job did not write: {shown}",
            hint="--overwrite replaces only a batch job's own files; choose an empty folder",
        )
    return entries


def resumable_plan(spec: JobSpec, model: ModelSource, folder: Path) -> JobPlan:
    """The saved plan of the job in ``folder``, if its input and model are still the same."""
    plan = load_plan(folder)
    planned, spec = JobSpec.from_dict(plan.spec), JobSpec.from_dict(spec.to_dict())  # same types
    problems = [
        f"{name} was {getattr(planned, name)!r}, now {getattr(spec, name)!r}"
        for name in LAYOUT_FIELDS
        if getattr(planned, name) != getattr(spec, name)
    ]
    if plan.model_sha256 != model.sha256:
        problems.append(
            f"the model changed (sha256 {plan.model_sha256[:12]} when planned, "
            f"{model.sha256[:12]} now)"
        )
    problems = problems or _input_changes(plan, planned)
    if problems:
        raise BatchResumeMismatch(
            f"cannot resume the job in {folder}: {'; '.join(problems)}",
            hint="restore the input and model it started with, or start again with --overwrite",
        )
    return plan


def _input_changes(plan: JobPlan, planned: JobSpec) -> list[str]:
    fmt, paths = sources.resolve_inputs(planned.input, planned.input_format)
    before = [f.path for f in plan.files]
    if paths != before or fmt != plan.input_format:
        added, gone = sorted(set(paths) - set(before)), sorted(set(before) - set(paths))
        return [f"input files changed (new: {added[:3]}, gone: {gone[:3]})"]
    for file in plan.files:
        size, mtime = sources.stat_file(file.path)
        if (size, mtime) != (file.size_bytes, file.mtime):
            return [
                f"{file.path} changed (size {file.size_bytes} -> {size}, mtime {file.mtime} "
                f"-> {mtime})"
            ]
        rows = sources.describe(file.path, fmt).rows
        if rows != file.rows:
            return [f"{file.path} changed ({file.rows} rows when planned, {rows} now)"]
    return []
