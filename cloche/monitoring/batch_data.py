"""What a monitor reads of a finished batch job: its manifest, its input files profiled like a
window of traffic, and the distribution of the predictions it wrote.

Inputs can be far larger than memory, so every file is read in record batches (Parquet row
groups, or blocks of CSV / JSON lines text through ``batch/sources.py``) and each batch is
profiled and merged into the running profile: memory follows one batch and the sketches, never
the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cloche.batch import service as batch_service
from cloche.batch import sources
from cloche.batch.entities import ACTIVE_STATES, BatchJob
from cloche.batch.manifest import MANIFEST_FILE
from cloche.batch.schema import NULL_SPELLINGS
from cloche.errors import InvalidDataset, JobStateConflict
from cloche.monitoring.feature_profiles import FeatureProfile, Kind, kind_of_arrow
from cloche.monitoring.profiles import Profile
from cloche.registry.entities import ModelVersion
from cloche.store.store import Store

PREDICTION_COLUMN = "prediction"  # what the batch writer names the model's output
BATCH_ROWS = 65_536  # Parquet rows profiled per step: a few MB per feature at most
# Jobs that ran to the end; a failed or cancelled one counts when it wrote predictions.
_SCORED = frozenset({"succeeded", "partially_succeeded"})


@dataclass(frozen=True)
class FinishedJob:
    """A batch job that ended with predictions on disk, as its manifest records it."""

    job: BatchJob
    manifest: dict[str, Any]

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def model(self) -> str:
        """The version that scored the job (``name:version``), as the manifest names it."""
        return str(self.manifest.get("model", {}).get("ref") or self.job.model_version)

    @property
    def input_format(self) -> str:
        return str(self.manifest["input_format"])

    @property
    def inputs(self) -> list[dict[str, Any]]:
        return list(self.manifest.get("inputs") or [])

    @property
    def output_format(self) -> str:
        return str((self.manifest.get("job") or {}).get("output_format") or "parquet")

    @property
    def outputs(self) -> list[str]:
        """The prediction files, as paths in the job's output folder."""
        folder = Path(self.job.output)
        return [str(folder / o["name"]) for o in self.manifest.get("outputs") or []]

    def describe(self) -> dict[str, Any]:
        """What the run compared, for its results."""
        m = self.manifest
        return {
            "batch_job": self.id,
            "state": self.job.state,
            "input": self.job.spec.get("input"),
            "input_format": self.input_format,
            "input_files": len(self.inputs),
            "rows_total": m.get("rows_total"),
            "rows_scored": m.get("rows_scored"),
            "error_rows": m.get("error_rows"),
            "output": self.job.output,
            "output_files": len(self.outputs),
            "finished": m.get("finished"),
        }


def finished_job(store: Store, job_id: str) -> FinishedJob:
    """The job ``job_id`` (or a unique prefix) with its manifest; an unknown job, one still
    queued or running, and one that ended without predictions are each refused with a hint."""
    job = batch_service.get_job(store, job_id)  # BatchJobNotFound, with its hint
    if job.state in ACTIVE_STATES:
        raise JobStateConflict(
            f"batch job {job.id} is {job.state}: a monitor compares a job once it has finished",
            hint=f"wait for it (`cloche batch show {job.id}`), then run the monitor again",
        )
    manifest = _manifest(job)
    if manifest is None or not manifest.get("outputs"):
        if job.state in _SCORED:
            raise InvalidDataset(
                f"batch job {job.id} {job.state} but its manifest "
                f"{Path(job.output) / MANIFEST_FILE} is missing or lists no predictions",
                hint="its output folder was moved or emptied; monitor a job whose output remains",
            )
        raise JobStateConflict(
            f"batch job {job.id} {job.state} without writing any predictions: "
            "there is nothing to compare",
            hint=f"`cloche batch resume {job.id}` finishes it; then run the monitor again",
        )
    return FinishedJob(job, manifest)


def _manifest(job: BatchJob) -> dict[str, Any] | None:
    path = Path(job.output) / MANIFEST_FILE
    try:
        found = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return found if isinstance(found, dict) else None


def changed_inputs(job: FinishedJob) -> list[str]:
    """Input files whose size differs from the manifest's (the data moved under the job)."""
    changed = []
    for entry in job.inputs:
        try:
            size, _ = sources.stat_file(entry["path"])
        except OSError:
            continue  # reading it fails with the file named; no note needed
        if size != entry.get("size_bytes", size):
            changed.append(f"{entry['path']} ({entry['size_bytes']} -> {size} bytes)")
    return changed


def profile_inputs(job: FinishedJob, kinds: dict[str, str]) -> Profile:
    """Every input file's ``kinds`` features, profiled batch by batch and merged. A feature a
    file lacks counts as missing in each of its rows (the data-quality missing rate)."""
    return _profile([(entry["path"], job.input_format) for entry in job.inputs], kinds)


def prediction_kind(version: ModelVersion, job: FinishedJob) -> Kind:
    """Predicted classes are categories and predicted values numbers; a signature that does
    not say (task unknown, no classes) is read from the first output file's column type."""
    signature = version.parsed_signature()
    if signature.task == "regression":
        return "numeric"
    if signature.task == "classification" or signature.classes is not None:
        return "categorical"
    schema = _schema(job.outputs[0], job.output_format)
    index = schema.get_field_index(PREDICTION_COLUMN)
    return kind_of_arrow(schema.field(index).type) if index >= 0 else "numeric"


def profile_predictions(job: FinishedJob, kind: Kind) -> FeatureProfile:
    """The ``prediction`` column of every output file, profiled as ``kind``."""
    files = [(path, job.output_format) for path in job.outputs]
    return _profile(files, {PREDICTION_COLUMN: kind}).features[PREDICTION_COLUMN]


def _profile(files: list[tuple[str, str]], kinds: dict[str, str]) -> Profile:
    # Merged over an empty profile, so a feature keeps its kind even with no rows at all.
    profile = Profile.from_table(pa.table({n: pa.nulls(0) for n in kinds}), kinds)
    for path, fmt in files:
        for table in _tables(path, fmt, list(kinds)):
            profile = profile.merge(Profile.from_table(_frame(table, kinds), kinds))
    return profile


def _frame(table: pa.Table, kinds: dict[str, str]) -> pa.Table:
    """Exactly the profiled columns; one the file lacks is all nulls."""
    columns = {}
    for name, kind in kinds.items():
        if name not in table.column_names:
            columns[name] = pa.chunked_array([pa.nulls(table.num_rows)])
        elif kind == "numeric" and pa.types.is_string(table[name].type):
            columns[name] = _null_spellings_as_nulls(table[name])
        else:
            columns[name] = table[name]
    return pa.table(columns)


def _null_spellings_as_nulls(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Text numbers (CSV, or JSON lines read line by line) with "NA", "null", "" ... as nulls,
    as the batch scorer reads them (``batch/schema.py``): missing values, not mismatches."""
    trimmed = pc.utf8_trim_whitespace(column)
    spelled = pc.is_in(trimmed, value_set=pa.array(NULL_SPELLINGS, pa.string()))
    return pc.if_else(spelled, pa.scalar(None, pa.string()), trimmed)


def _tables(path: str, fmt: str, columns: list[str]) -> Iterator[pa.Table]:
    """The file's ``columns`` (those it has) in tables of bounded size; read errors name it."""
    try:
        if fmt == "parquet":
            yield from _parquet(path, columns)
            return
        schema = _schema(path, fmt)
        present = [schema.field(n) for n in columns if schema.get_field_index(n) >= 0]
        # CSV comes as text (the profile parses numbers and counts what does not parse as
        # type mismatches); JSON lines with the types of the file's first block. With none of
        # the columns, one other is read only to count the rows.
        yield from sources.iter_text(path, fmt, pa.schema(present or [schema.field(0)]))
    except InvalidDataset:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise sources.unreadable(path, fmt, exc) from exc


def _parquet(path: str, columns: list[str]) -> Iterator[pa.Table]:
    with fsspec.open(path, "rb") as fh:
        # No pre-buffering: it would read every row group up front (memory = the file).
        reader = pq.ParquetFile(fh, pre_buffer=False)
        names = set(reader.schema_arrow.names)
        present = [n for n in columns if n in names]
        for batch in reader.iter_batches(BATCH_ROWS, columns=present, use_threads=False):
            yield pa.Table.from_batches([batch])


def _schema(path: str, fmt: str) -> pa.Schema:
    """A file's columns (for CSV and JSON lines, with the types of its first block)."""
    schema, _ = sources.read_sample(sources.InputFile(path, 0, 0), fmt)
    return schema
