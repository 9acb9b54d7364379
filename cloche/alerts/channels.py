"""Where alerts go: a webhook (Slack, Mattermost, Teams-style incoming hooks), email over SMTP,
the server log, or a registered pipeline to run, written and stored as a spec string.

A channel is a spec (``webhook:https://...``, ``email:a@b,c@d``, ``log``, ``pipeline:NAME``, which
``alerts/pipeline_channel.py`` delivers by queueing a run); nothing secret belongs
in it, so URLs carrying credentials are refused. A webhook's URL, whose path is often its only
secret, can be named instead: ``webhook:env:VAR`` stores the variable's name, and delivery
(``alerts/delivery.py``) reads the URL from it each time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from cloche.alerts.masking import mask_url
from cloche.errors import InvalidInput
from cloche.registry.refs import NAME_RE

ChannelKind = Literal["webhook", "email", "log", "pipeline"]

CHANNEL_FORMS = (
    "webhook:https://HOST/PATH, webhook:env:VARIABLE, email:ADDRESS[,ADDRESS...], "
    "pipeline:NAME or log"
)
MAX_URL = 2048

# A practical subset of RFC 5322: dot-atom local part and a hostname. No quoted local parts,
# no display names, no whitespace or angle brackets (nothing that could inject a header).
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL_ADDRESS = re.compile(rf"{_LOCAL}@{_LABEL}(?:\.{_LABEL})*")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Channel:
    """One destination. ``str(channel)`` is the canonical spec, which ``parse_channel`` reads
    back; it is what the database stores."""

    kind: ChannelKind
    url: str | None = None  # webhook
    url_env: str | None = None  # webhook: the environment variable holding its URL instead
    to: tuple[str, ...] = ()  # email recipients
    pipeline: str | None = None  # pipeline: the registered pipeline an alert runs

    def __str__(self) -> str:
        if self.kind == "webhook" and self.url_env:
            return f"webhook:env:{self.url_env}"
        if self.kind == "webhook":
            return f"webhook:{self.url}"
        if self.kind == "email":
            return "email:" + ",".join(self.to)
        if self.kind == "pipeline":
            return f"pipeline:{self.pipeline}"
        return "log"

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": self.kind, "spec": str(self)}
        if self.kind == "webhook" and self.url_env:
            body["url_env"] = self.url_env
        elif self.kind == "webhook":
            body["url"] = self.url
        elif self.kind == "email":
            body["to"] = list(self.to)
        elif self.kind == "pipeline":
            body["pipeline"] = self.pipeline
        return body

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Channel:
        """Read ``to_dict()`` back, validating it as ``parse_channel`` would."""
        if "spec" in data:
            return parse_channel(str(data["spec"]))
        kind = data.get("kind")
        if kind == "webhook" and data.get("url_env"):
            return parse_channel(f"webhook:env:{data['url_env']}")
        if kind == "webhook":
            return parse_channel(f"webhook:{data.get('url', '')}")
        if kind == "email":
            return parse_channel("email:" + ",".join(str(a) for a in data.get("to", [])))
        if kind == "pipeline":
            return parse_channel(f"pipeline:{data.get('pipeline', '')}")
        return parse_channel(str(kind))

    def display(self) -> str:
        """For logs and messages: a webhook's path and query often hold its token, so only
        the scheme and host are shown."""
        if self.kind == "webhook" and self.url:
            return f"webhook:{mask_url(self.url)}"
        return str(self)


def parse_channel(spec: str) -> Channel:
    """Read ``webhook:URL``, ``webhook:env:VARIABLE``, ``email:ADDR[,ADDR...]``,
    ``pipeline:NAME`` or ``log``."""
    text = spec.strip()
    kind, sep, target = text.partition(":")
    kind = kind.strip().lower()
    if kind == "log" and not sep:
        return Channel("log")
    if kind == "webhook" and sep and target.strip().lower().startswith("env:"):
        return Channel("webhook", url_env=_check_env_name(target.strip()[4:].strip()))
    if kind == "webhook" and sep:
        return Channel("webhook", url=check_url(target.strip()))
    if kind == "email" and sep:
        return Channel("email", to=_check_addresses(target))
    if kind == "pipeline" and sep:
        return Channel("pipeline", pipeline=_check_pipeline_name(target.strip()))
    raise _bad(f"alert channel {_shown(text)!r} is not one of: {CHANNEL_FORMS}")


def check_url(url: str) -> str:
    if not url:
        raise _bad("a webhook channel needs a URL: webhook:https://HOST/PATH")
    if len(url) > MAX_URL:
        raise _bad(f"webhook URL {_shown(url)!r} is longer than {MAX_URL} characters")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise _bad(f"webhook URL {_shown(url)!r} holds whitespace or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError as exc:
        raise _bad(f"webhook URL {_shown(url)!r} is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise _bad(f"webhook URL {_shown(url)!r} must start with http:// or https://")
    if parts.username is not None or parts.password is not None:
        # The spec is stored and shown; a secret in it would leak through both.
        raise _bad(
            "a webhook URL may not hold credentials (user:password@); "
            "use a URL whose token is in its path, as incoming webhooks do"
        )
    if not parts.hostname:
        raise _bad(f"webhook URL {_shown(url)!r} has no host")
    return url


def _check_env_name(name: str) -> str:
    if not ENV_NAME.fullmatch(name):
        # Not echoed: it may be the URL itself, pasted where the variable's name belongs.
        raise _bad("webhook:env: needs the name of an environment variable, like SLACK_HOOK")
    return name


def _check_pipeline_name(name: str) -> str:
    if not NAME_RE.match(name) or ".." in name:
        raise _bad(f"pipeline:{_shown(name)} does not name a pipeline, as in pipeline:retrain")
    return name


def _check_addresses(target: str) -> tuple[str, ...]:
    addresses: list[str] = []
    for raw in target.split(","):
        address = raw.strip()
        if not address:
            raise _bad(f"email channel {target.strip()!r} has an empty address")
        if len(address) > 254 or not EMAIL_ADDRESS.fullmatch(address):
            raise _bad(f"{address!r} is not an email address like ops@example.com")
        if address not in addresses:  # one copy per recipient, order kept
            addresses.append(address)
    return tuple(addresses)


def _shown(text: str, limit: int = 120) -> str:
    """The spec as it may appear in an error: credentials in a URL masked (up to the last @
    before the path, as URL parsers read it), and cut short."""
    masked = re.sub(r"(://)[^/\s]*@", r"\1***@", text)
    return masked if len(masked) <= limit else masked[:limit] + "..."


def _bad(message: str) -> InvalidInput:
    return InvalidInput(message, hint=f"alert channels are {CHANNEL_FORMS}")
