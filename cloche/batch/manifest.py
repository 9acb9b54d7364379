"""``<output>/manifest.json``: what a batch job read, wrote and ended as, for people and tools.

Written at the end of every run (succeeded, failed or cancelled), atomically, from the plan and the
chunks on disk, so a resumed job's manifest covers the chunks of every run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from cloche.batch.plan import JobPlan, utc_now
from cloche.batch.spec import JobSpec, ModelSource

MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class RunSummary:
    """How a run ended, and the rows of every done chunk: {index: (input rows, bad rows)}."""

    state: str
    message: str
    started: str
    chunks: dict[int, tuple[int, int]]

    @property
    def rows_done(self) -> int:
        return sum(rows for rows, _ in self.chunks.values())

    @property
    def error_rows(self) -> int:
        return sum(bad for _, bad in self.chunks.values())


def build_manifest(
    plan: JobPlan, spec: JobSpec, model: ModelSource, run: RunSummary
) -> dict[str, Any]:
    done = sorted(run.chunks)
    return {
        "manifest_version": MANIFEST_VERSION,
        "job": spec.to_dict(),
        "model": {"ref": model.ref, "framework": model.framework, "sha256": model.sha256},
        "input_format": plan.input_format,
        "inputs": [
            {"path": f.path, "size_bytes": f.size_bytes, "rows": f.rows} for f in plan.files
        ],
        "outputs": [
            {"name": plan.prediction_name(i), "rows": run.chunks[i][0] - run.chunks[i][1]}
            for i in done
        ],
        "errors": [
            {"name": plan.error_name(i), "rows": run.chunks[i][1]} for i in done if run.chunks[i][1]
        ],
        "rows_total": plan.rows_total,
        "rows_scored": run.rows_done - run.error_rows,
        "error_rows": run.error_rows,
        "chunks_total": plan.chunks_total,
        "chunks_done": len(done),
        "state": run.state,
        "message": run.message,
        "planned": plan.created,
        "started": run.started,
        "finished": utc_now(),
        "engine": spec.engine,
        "cloche_version": cloche_version(),
    }


def write_manifest(plan: JobPlan, spec: JobSpec, model: ModelSource, run: RunSummary) -> Path:
    """Write the manifest beside the outputs; a crash leaves the previous one, never half."""
    folder = Path(plan.output_dir)
    path = folder / MANIFEST_FILE
    tmp = folder / f"{MANIFEST_FILE}.tmp-{os.getpid()}"
    body = orjson.dumps(build_manifest(plan, spec, model, run), option=orjson.OPT_INDENT_2)
    with tmp.open("wb") as fh:
        fh.write(body)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def cloche_version() -> str:
    from cloche import __version__

    return __version__
