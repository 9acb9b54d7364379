"""A notice: a message someone (a pipeline step, an operator) sends to alert channels by hand,
rather than a monitor run's digest. It goes through the same channels, egress checks, retries
and delivery records as a monitor's alerts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cloche import audit
from cloche.alerts.channels import parse_channel
from cloche.alerts.delivery import Delivery, deliver_all
from cloche.config import Settings
from cloche.errors import InvalidInput
from cloche.store.store import Store

MAX_TITLE = 200
MAX_TEXT = 10_000


@dataclass(frozen=True)
class Notice:
    title: str
    body: str = ""
    sender: str = ""
    sent_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def subject(self) -> str:
        return f"[cloche] {self.title}"[:MAX_TITLE]

    @property
    def text(self) -> str:
        lines = [f"cloche: {self.title}"]
        if self.body:
            lines += ["", self.body]
        if self.sender:
            lines += ["", f"Sent by {self.sender} at {self.sent_at.isoformat(timespec='seconds')}."]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "notice",
            "title": self.title,
            "text": self.body,
            "sender": self.sender,
            "sent_at": self.sent_at.isoformat(),
        }


def send_notice(
    store: Store,
    settings: Settings,
    channels: list[str],
    title: str,
    text: str = "",
    *,
    actor: str,
) -> list[Delivery]:
    """Send a notice on each channel (``webhook:URL``, ``email:ADDR``, ``log``); one Delivery
    per channel, in their order, and an audit entry saying who sent what where. Never raises
    for a channel that is down: the delivery says so."""
    if not channels:
        raise InvalidInput("name at least one channel to send the notice to")
    title = title.strip()
    if not title or len(title) > MAX_TITLE or len(text) > MAX_TEXT:
        raise InvalidInput(
            f"a notice needs a title of 1-{MAX_TITLE} characters and a text of at most {MAX_TEXT}"
        )
    parsed = [parse_channel(spec) for spec in channels]  # all checked before any is sent
    notice = Notice(title=title, body=text, sender=actor)
    found = deliver_all(parsed, notice, settings=settings.alerts, egress=settings.egress.policy())
    with store.transaction() as session:
        audit.record(
            session,
            actor=actor,
            action="alert.send",
            resource_type="notice",
            resource=title,
            # Masked as everywhere else a channel is shown: a webhook's path is its secret.
            after={c.display(): d.ok for c, d in zip(parsed, found, strict=True)},
        )
    return found
