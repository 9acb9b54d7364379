"""Webhook URLs as a caller may see them: whole for an admin, scheme and host for anyone else.

An incoming webhook's path or query is its credential (``https://hooks.example/T0/B0/XyZ``):
whoever reads it can post to the channel. Monitors, alerts, runs and audit rows hold channel
specs, so every response that returns them to a non-admin passes through
:func:`for_principal` first.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from pydantic import BaseModel

from cloche.auth.roles import Permission, Principal, allows

T = TypeVar("T")

# A webhook spec anywhere in a string: the spec itself, or a message quoting it. The URL ends
# at whitespace, a quote or an angle bracket.
_WEBHOOK = re.compile(r"(?i)\bwebhook:(https?)://([^\s\"'<>]*)")


def mask_url(url: str) -> str:
    """``https://hooks.example/T0/B0/XyZ?token=1`` -> ``https://hooks.example/...``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "..."
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    host = authority.rpartition("@")[2]  # never show credentials, though specs refuse them
    return f"{scheme}://{host}/..."


def mask_text(text: str) -> str:
    """``text`` with every ``webhook:URL`` in it reduced to scheme and host."""
    return _WEBHOOK.sub(lambda m: f"webhook:{mask_url(f'{m[1]}://{m[2]}')}", text)


def mask_webhooks(value: T) -> T:
    """A copy of ``value`` (strings, lists, dicts, pydantic models) with webhook URLs masked."""
    return _walk(value)  # type: ignore[no-any-return]


def for_principal(principal: Principal, value: T) -> T:
    """``value`` as ``principal`` may see it: unchanged for an admin, webhook URLs masked else."""
    return value if allows(principal, Permission.ADMIN) else mask_webhooks(value)


def _walk(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        return value.model_copy(update={name: _walk(getattr(value, name)) for name in fields})
    if isinstance(value, dict):
        walked = {key: _walk(item) for key, item in value.items()}
        # Channel.to_dict() form: {"kind": "webhook", "url": ..., "spec": ...}
        if walked.get("kind") == "webhook" and isinstance(walked.get("url"), str):
            walked["url"] = mask_url(walked["url"])
        return walked
    if isinstance(value, list | tuple):
        return type(value)(_walk(item) for item in value)
    return value
