"""MkDocs hook: the settings reference, rendered at build time from ``cloche.config.Settings``.

docs/reference/settings.md holds the prose and a marker; this hook replaces the marker with one
table per section of the pydantic Settings: each field as its environment variable, its type,
default, bounds and description, so the page lists exactly the settings the code reads.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

MARKER = "<!-- settings-reference -->"
PREFIX = "CLOCHE_"
NESTED = "__"
_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))


@dataclass(frozen=True)
class Setting:
    env: str  # CLOCHE_SECTION__KEY
    section: str  # "" for a top-level field
    type: str
    default: str
    bounds: str
    description: str


def on_page_markdown(markdown: str, **_: Any) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render(list(settings())))


def settings() -> Iterator[Setting]:
    """Every leaf field of Settings, sections expanded, in declaration order."""
    from pydantic import BaseModel

    from cloche.config import Settings

    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for key, sub in annotation.model_fields.items():
                yield _setting(f"{PREFIX}{name}{NESTED}{key}".upper(), name, sub)
        else:
            yield _setting(f"{PREFIX}{name}".upper(), "", field)


def _setting(env: str, section: str, field: Any) -> Setting:
    bounds = []
    for constraint in field.metadata:
        for attribute, sign in _BOUNDS:
            value = getattr(constraint, attribute, None)
            if value is not None:
                bounds.append(f"{sign} {value}")
    return Setting(
        env=env,
        section=section,
        type=type_name(field.annotation),
        default=_default(field),
        bounds=", ".join(bounds),
        description=field.description or "",
    )


def _default(field: Any) -> str:
    from pydantic_core import PydanticUndefined

    value = field.get_default(call_default_factory=True)
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "unset"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Path):
        return f"`{value}`"
    if isinstance(value, list):
        return "`[]`" if not value else f"`{value}`"
    return f"`{value}`"


def type_name(annotation: Any) -> str:
    """A field's type as a reader would write it: ``integer or unset``, ``list of paths``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        kinds = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(kinds) + (" or unset" if type(None) in args else "")
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"list of {type_name(args[0])}s" if args else "list"
    if origin is typing.Annotated:
        return type_name(args[0])
    names = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}
    return names.get(annotation) or str(getattr(annotation, "__name__", annotation))


def render(found: list[Setting]) -> str:
    from cloche.config import Settings

    sections: dict[str, list[Setting]] = {}
    for setting in found:
        sections.setdefault(setting.section, []).append(setting)
    out = [f"{len(found)} settings, in {len(sections)} groups.", ""]
    for section, rows in sections.items():
        title = f"`{section}`" if section else "Top level"
        out += [f"## {title}", ""]
        if section:
            doc = Settings.model_fields[section].annotation.__doc__  # type: ignore[union-attr]
            if doc and "BaseModel" not in doc and "A base class" not in doc:
                out += [" ".join(doc.split()), ""]
        out += [
            "| Variable | Type | Default | Description |",
            "| --- | --- | --- | --- |",
        ]
        for s in rows:
            kind = s.type + (f" ({s.bounds})" if s.bounds else "")
            cells = [f"`{s.env}`", _cell(kind), _cell(s.default), _cell(s.description)]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")
