"""Multipart uploads: the model upload form, and its files staged in a private temp folder.

A part's filename is the file's path relative to the uploaded folder (``sub/weights.bin``), so
a folder keeps its layout. Every name is checked before anything is written, and everything is
written under ``$CLOCHE_HOME/tmp/upload-*``, which is removed when the request ends.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

from fastapi import File, Form, UploadFile

from cloche.errors import BadRequest, InvalidInput
from cloche.store.store import Store

CHUNK = 1024 * 1024
NAME_HINT = "send each file with its path relative to the uploaded folder, e.g. sub/weights.bin"


class UploadForm:
    """The multipart form of ``POST /api/v1/models``."""

    def __init__(
        self,
        name: Annotated[str, Form(description="model name, e.g. churn")],
        files: Annotated[
            list[UploadFile],
            File(description="the model file, or each file of a folder named by relative path"),
        ],
        framework: Annotated[str | None, Form(description="default: detected")] = None,
        description: Annotated[str, Form()] = "",
        aliases: Annotated[
            list[str] | None, Form(description="aliases to point here; repeat or comma-separate")
        ] = None,
        labels: Annotated[str | None, Form(description='JSON object: {"team": "risk"}')] = None,
        metrics: Annotated[str | None, Form(description='JSON object: {"auc": 0.91}')] = None,
        folder: Annotated[bool, Form(description="the files form a folder, even one file")] = False,
        sample: Annotated[
            UploadFile | None, File(description="rows to infer the signature")
        ] = None,
        baseline: Annotated[UploadFile | None, File(description="training data profile")] = None,
    ) -> None:
        self.name = name
        self.files = files
        self.framework = framework or None
        self.description = description
        self.aliases = [a.strip() for item in aliases or () for a in item.split(",") if a.strip()]
        self.labels: dict[str, Any] = json_object(labels, field="labels")
        self.metrics: dict[str, Any] = json_object(metrics, field="metrics")
        self.folder = folder
        self.sample = sample
        self.baseline = baseline


def json_object(value: str | None, *, field: str) -> dict[str, Any]:
    """A form field holding a JSON object; empty means {}."""
    if not value:
        return {}
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):  # RecursionError: nested a few thousand deep
        parsed = None
    if not isinstance(parsed, dict):
        raise InvalidInput(
            f"form field {field!r} must be a JSON object", hint='e.g. {"team": "risk"}'
        )
    return parsed


def safe_relpath(filename: str | None) -> str:
    """``filename`` if it is a plain relative path; BadRequest for anything that could escape."""
    if not filename:
        raise BadRequest("a file part has no filename", hint=NAME_HINT)
    parts = filename.split("/")
    if (
        filename.startswith("/")
        or "\\" in filename
        or "\x00" in filename
        or any(p in ("", ".", "..") or len(p.encode()) > 255 for p in parts)
    ):
        raise BadRequest(f"refusing unsafe upload file name {filename!r}", hint=NAME_HINT)
    return filename


@dataclass(frozen=True)
class Staged:
    """Where the staged parts are: the model file or folder, and the optional datasets."""

    source: Path
    sample: Path | None = None
    baseline: Path | None = None


@contextmanager
def staging_dir(store: Store) -> Iterator[Path]:
    """A fresh folder under ``$CLOCHE_HOME/tmp``, removed afterwards whatever happens."""
    root = store.home / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="upload-", dir=root))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def stage_model(store: Store, form: UploadForm) -> Iterator[Staged]:
    """Write a model upload's parts to disk; a folder when several files or ``folder`` say so."""
    rels = [safe_relpath(part.filename) for part in form.files]
    if len(set(rels)) != len(rels):
        raise BadRequest("the upload names the same file twice", hint=NAME_HINT)
    with staging_dir(store) as tmp:
        model_dir = tmp / "model"
        for rel, part in zip(rels, form.files, strict=True):
            _write(part, model_dir, rel)
        as_folder = form.folder or len(rels) > 1 or "/" in rels[0]
        yield Staged(
            source=model_dir if as_folder else model_dir / rels[0],
            sample=_write_dataset(form.sample, tmp / "sample") if form.sample else None,
            baseline=_write_dataset(form.baseline, tmp / "baseline") if form.baseline else None,
        )


@contextmanager
def stage_file(store: Store, part: UploadFile) -> Iterator[Path]:
    """Write one uploaded file (a dataset) to disk under its own base name."""
    with staging_dir(store) as tmp:
        yield _write_dataset(part, tmp)


def _write_dataset(part: UploadFile, folder: Path) -> Path:
    # Datasets are single files: keep the base name, whose suffix says the format.
    name = PurePosixPath(safe_relpath(part.filename)).name
    return _write(part, folder, name)


def _write(part: UploadFile, root: Path, rel: str) -> Path:
    target = root / rel
    if not target.resolve().is_relative_to(root.resolve()):
        raise BadRequest(f"refusing unsafe upload file name {rel!r}", hint=NAME_HINT)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        part.file.seek(0)
        with target.open("xb") as out:
            shutil.copyfileobj(part.file, out, CHUNK)
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
        raise BadRequest(
            f"upload file name {rel!r} clashes with another file of the upload", hint=NAME_HINT
        ) from exc
    return target
