"""A batch job's bad rows, a page at a time: what its ``errors-*.jsonl`` files hold.

Each chunk that had bad rows wrote one errors file beside its predictions (batch/writer.py),
one JSON line a row: ``{"row", "input", "message"}``. The files' names sort in chunk order, so
reading them in name order lists the rows in input order. Only the asked page is parsed; the
lines after it are counted, not decoded, so the last page of a million bad rows costs a scan
of bytes, not a million ``json.loads``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from cloche.store.paging import Page, PageRequest
from cloche.store.store import Store

from . import service
from .plan import output_folder

ERRORS_GLOB = "errors-*-of-*.jsonl"


class ErrorRow(BaseModel):
    """One row the model could not score: its place in the input, why, and what it held."""

    row: int
    message: str
    input: dict[str, Any] = {}


def page_error_rows(store: Store, job_id: str, page: PageRequest) -> Page[ErrorRow]:
    """The page of job ``job_id``'s bad rows that ``page`` asks for, in input order
    (BatchJobNotFound if no such job). A running job shows the chunks committed so far.
    Bad rows have no search or other order: ``q`` and ``sort`` are not used."""
    job = service.get_job(store, job_id)
    items: list[ErrorRow] = []
    seen = 0
    for path in _error_files(job.output):
        with path.open("rb") as fh:
            for line in fh:
                if not line.strip():
                    continue
                if page.offset <= seen < page.offset + page.limit:
                    items.append(_parse(line, seen))
                seen += 1
    following = page.offset + len(items)
    return Page[ErrorRow](
        items=items,
        total=seen,
        limit=page.limit,
        offset=page.offset,
        next_offset=following if following < seen else None,
    )


def _error_files(output: str) -> list[Path]:
    if not output:
        return []
    folder = output_folder(output)
    return sorted(folder.glob(ERRORS_GLOB)) if folder.is_dir() else []


def _parse(line: bytes, index: int) -> ErrorRow:
    """A line as written by the writer; a damaged one is shown as such, not raised."""
    try:
        data = json.loads(line)
        return ErrorRow(
            row=int(data["row"]),
            message=str(data.get("message", "")),
            input=data.get("input") or {},
        )
    except (ValueError, KeyError, TypeError):
        return ErrorRow(row=index, message="this line of the errors file is not valid JSON")
