"""Model references and names: ``name``, ``name:3``, ``name@prod``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cloche.errors import InvalidName, InvalidReference

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}[A-Za-z0-9]$|^[A-Za-z0-9]$")
ALIAS_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
RESERVED_ALIASES = frozenset({"latest"})


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid model name, else raise InvalidName saying why."""
    if not isinstance(name, str) or not NAME_RE.match(name) or ".." in name:
        raise InvalidName(
            f"invalid model name {name!r}",
            hint="use 1-64 letters, digits, '-', '_' or '.', starting and ending with a "
            "letter or digit (e.g. churn-model)",
        )
    return name


def check_alias(alias: str) -> str:
    """Return ``alias`` if it is a valid alias, else raise InvalidName saying why."""
    if not isinstance(alias, str) or not ALIAS_RE.match(alias):
        raise InvalidName(
            f"invalid alias {alias!r}",
            hint="use a lowercase word: a letter, then letters, digits, '-' or '_' (e.g. prod)",
        )
    if alias in RESERVED_ALIASES:
        raise InvalidName(f"alias {alias!r} is reserved: it always means the newest version")
    return alias


@dataclass(frozen=True)
class ModelRef:
    """A parsed reference; at most one of ``version`` and ``alias`` is set."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


def parse_ref(ref: str) -> ModelRef:
    """Parse ``name``, ``name:VERSION`` or ``name@ALIAS``; a bare name means the newest version."""
    if not isinstance(ref, str) or not ref.strip():
        raise InvalidReference("empty model reference", hint="use name, name:3 or name@prod")
    ref = ref.strip()
    if "@" in ref:
        name, _, alias = ref.partition("@")
        check_name(name)
        if alias == "latest":
            return ModelRef(name)
        return ModelRef(name, alias=check_alias(alias))
    if ":" in ref:
        name, _, version = ref.partition(":")
        check_name(name)
        if not version.isdigit() or int(version) < 1:
            raise InvalidReference(
                f"invalid version {version!r} in {ref!r}",
                hint="versions are whole numbers from 1, as in churn:3",
            )
        return ModelRef(name, version=int(version))
    return ModelRef(check_name(ref))
