"""Printing shared by every command: JSON on stdout, Rich tables, signatures, errors on stderr."""

import json
import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cloche.registry.entities import ModelDetail, ModelSummary, ModelVersion, ResidentModel

# Rich resolves sys.stdout/sys.stderr at print time, so these follow CliRunner's redirection.
out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)


def print_json(data: BaseModel | Iterable[BaseModel] | Mapping[str, Any]) -> None:
    """Write ``data`` as JSON on stdout and nothing else (no Rich markup, no wrapping)."""
    if isinstance(data, BaseModel):
        payload: Any = data.model_dump(mode="json")
    elif isinstance(data, Mapping):
        payload = dict(data)
    else:
        payload = [item.model_dump(mode="json") for item in data]
    sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def success(message: str) -> None:
    out.print(Text("✓ ", style="green") + Text(message))


# Below this many columns a table's dates go on two lines (day above time) so that the
# free-text columns beside them keep room enough to be read.
NARROW = 100


def new_table(
    title: str,
    columns: Sequence[str],
    *,
    whole: Collection[str] = (),
    dates: Collection[str] = (),
    right: Collection[str] = (),
) -> Table:
    """A titled table that stays readable in a narrow terminal (80 columns).

    The ``whole`` columns (ids, names) are never wrapped, so the free-text columns give way
    first; the ``dates`` columns (``when`` values) are kept whole on wide terminals and split at
    the space, never inside the day, on narrow ones. Every column folds what does not fit rather
    than cutting it to "…": a cut id or date (``2026-12-…``) can neither be read nor pasted into
    the next command.
    """
    narrow = out.size.width < NARROW
    # Narrow: no outer border or edge padding, four more characters for the text.
    table = Table(title=title, title_justify="left", show_edge=not narrow, pad_edge=not narrow)
    for column in columns:
        table.add_column(
            column,
            justify="right" if column in right else "left",
            no_wrap=column in whole or (column in dates and not narrow),
            # A fixed width is the only one Rich never shrinks below (min_width is not kept
            # when a table is too wide); 10 is a day, YYYY-MM-DD.
            width=10 if column in dates and narrow else None,
            overflow="fold",
        )
    return table


def when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M") if value else ""


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def pairs(mapping: Mapping[str, Any], link: str = "=", *, sep: str = ", ") -> str:
    return sep.join(f"{k}{link}{v}" for k, v in mapping.items())


def _short_list(values: Iterable[Any], limit: int = 6) -> str:
    items = [str(v) for v in values]
    shown = ", ".join(items[:limit])
    return shown + (f", … (+{len(items) - limit})" if len(items) > limit else "")


def models_table(models: list[ModelSummary]) -> Table:
    table = new_table(
        "Models",
        ("name", "latest", "framework", "aliases", "labels", "updated"),
        whole=("name", "latest", "aliases"),
        dates=("updated",),
    )
    for m in models:
        table.add_row(
            Text(m.name, style="bold"),
            f"{m.latest_version} of {m.version_count}",
            m.framework,
            pairs(m.aliases, "→", sep="\n"),  # one a line: an alias is never split
            pairs(m.labels),
            when(m.updated_at),
        )
    return table


def versions_table(versions: list[ModelVersion]) -> Table:
    table = new_table(
        "Versions",
        ("version", "framework", "size", "aliases", "metrics", "created", "by"),
        whole=("version", "size", "aliases"),
        dates=("created",),
        right=("version", "size"),
    )
    for v in versions:
        table.add_row(
            str(v.version),
            v.framework,
            size(v.size_bytes),
            "\n".join(v.aliases),
            pairs({k: f"{x:.4g}" for k, x in v.metrics.items()}),
            when(v.created_at),
            v.created_by,
        )
    return table


def signature_tables(signature: Mapping[str, Any]) -> list[Table | Text]:
    """Inputs and outputs tables, then a line with the task and classes."""
    parts: list[Table | Text] = []
    kind = signature.get("input_kind", "tabular")
    for title, fields in (
        (f"Inputs ({kind})", signature.get("inputs") or []),
        ("Outputs", signature.get("outputs") or []),
    ):
        table = Table(title=title, title_justify="left")
        for column in ("name", "dtype", "shape", "categories"):
            table.add_column(column)
        for f in fields:
            cats = f.get("categories")
            table.add_row(
                f["name"],
                f["dtype"],
                "(" + ", ".join("?" if d == -1 else str(d) for d in f.get("shape", [-1])) + ")",
                _short_list(cats) if cats is not None else "",
            )
        if not fields:
            table.add_row(Text("unknown", style="dim"), "", "", "")
        parts.append(table)
    line = Text("task: ", style="bold") + Text(str(signature.get("task", "unknown")))
    if signature.get("classes") is not None:
        line += Text("   classes: ", style="bold") + Text(_short_list(signature["classes"], 10))
    if signature.get("source"):
        line += Text("   inferred from: ", style="bold") + Text(", ".join(signature["source"]))
    parts.append(line)
    return parts


def _field(label: str, value: str) -> Text:
    return Text(f"{label:<12}", style="bold") + Text(value)


def resident_table(rows: Sequence[ResidentModel], *, title: str = "Loaded models") -> Table:
    """One row per model per worker: `cloche models loaded`, and the cold starts of
    `cloche endpoints show`. The last load reads fetch / hash check / deserialise / warm-up."""
    table = Table(title=title, title_justify="left")
    table.add_column("model", no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("worker", no_wrap=True)
    table.add_column("last used", no_wrap=True)
    table.add_column("loads", justify="right")
    table.add_column("evictions", justify="right")
    table.add_column("last load (fetch/hash/deserialise/warm-up)")
    for r in rows:
        stages = [r.load_seconds.get(stage) for stage in LOAD_STAGE_NAMES]
        table.add_row(
            r.ref if r.resident else f"{r.ref} (evicted)",
            size(r.size_bytes) if r.size_bytes is not None else "-",
            str(r.worker),
            r.last_used.astimezone().strftime("%H:%M:%S") if r.last_used else "-",
            str(r.loads),
            str(r.evictions),
            "/".join(_ms(s) for s in stages) + " ms" if any(stages) else "-",
        )
    return table


LOAD_STAGE_NAMES = ("fetch", "hash_check", "deserialise", "warm_up")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def print_version(v: ModelVersion) -> None:
    """Everything known about one version: identity, signature, files, metrics, baseline."""
    out.print(Text(v.ref, style="bold cyan"))
    out.print(_field("framework", v.framework))
    out.print(_field("size", size(v.size_bytes)))
    resident = size(v.resident_bytes) if v.resident_bytes is not None else "not measured yet"
    out.print(_field("in memory", resident))
    out.print(_field("sha256", v.sha256))
    out.print(_field("created", f"{when(v.created_at)} by {v.created_by or '?'}"))
    if v.aliases:
        out.print(_field("aliases", ", ".join(v.aliases)))
    if v.description:
        out.print(_field("description", v.description))
    if v.labels:
        out.print(_field("labels", pairs(v.labels)))
    if v.metrics:
        out.print(_field("metrics", pairs({k: f"{x:.4g}" for k, x in v.metrics.items()})))
    if v.baseline:
        b = v.baseline
        detail = f"{b.get('file')} ({b.get('format')}, {b.get('rows')} rows, "
        detail += f"{len(b.get('columns') or [])} columns, sha256 {str(b.get('sha256'))[:12]})"
        out.print(_field("baseline", detail))
    out.print()
    for part in signature_tables(v.signature):
        out.print(part)
    files = Table(title="Files", title_justify="left")
    for column in ("path", "size", "sha256"):
        files.add_column(column, justify="right" if column == "size" else "left")
    for path, meta in sorted(v.files.items()):
        files.add_row(path, size(int(meta.get("size", 0))), str(meta.get("sha256", ""))[:12])
    out.print(files)


def print_model(m: ModelDetail) -> None:
    """A model's summary, its versions, and the signature of its newest version."""
    out.print(Text(m.name, style="bold cyan"))
    if m.description:
        out.print(_field("description", m.description))
    out.print(_field("latest", str(m.latest_version)))
    out.print(_field("aliases", pairs(m.aliases, "→") or "none"))
    if m.labels:
        out.print(_field("labels", pairs(m.labels)))
    out.print(_field("updated", when(m.updated_at)))
    out.print(versions_table(m.versions))
    latest = m.versions[-1]
    out.print(Text(f"Signature of {latest.ref} (latest)", style="bold"))
    for part in signature_tables(latest.signature):
        out.print(part)
