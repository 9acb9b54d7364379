"""Delivering an alert message on its channels.

:func:`deliver` is synchronous and never raises for a channel that is down: it retries with
exponential backoff and jitter, bounds each attempt with a timeout, and returns a
:class:`Delivery` saying what happened. Call it in a thread from async code. The senders are in
``alerts/webhook.py`` and ``alerts/smtp.py``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cloche.alerts.channels import Channel
from cloche.alerts.failure import AttemptFailed
from cloche.alerts.settings import DeliverySettings
from cloche.alerts.smtp import email_sender
from cloche.alerts.webhook import webhook_sender
from cloche.egress import Egress

if TYPE_CHECKING:
    from cloche.alerts.message import Message

log = logging.getLogger("cloche.alerts")


@dataclass(frozen=True)
class Delivery:
    """What happened to one message on one channel."""

    channel: str
    ok: bool
    attempts: int
    last_error: str | None = None
    delivered_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "ok": self.ok,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "delivered_at": self.delivered_at.isoformat() if self.delivered_at else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Delivery:
        at = data.get("delivered_at")
        return cls(
            channel=str(data["channel"]),
            ok=bool(data["ok"]),
            attempts=int(data["attempts"]),
            last_error=data.get("last_error"),
            delivered_at=datetime.fromisoformat(at) if at else None,
        )


def deliver(
    channel: Channel,
    message: Message,
    *,
    settings: DeliverySettings | None = None,
    egress: Egress | None = None,
) -> Delivery:
    """Send ``message`` on ``channel``; never raises for a channel that stays down.

    ``egress`` says which webhook destinations may be reached; by default only public ones
    (pass ``Settings.egress.policy()`` to honour CLOCHE_EGRESS__ALLOW).
    """
    settings = settings or DeliverySettings()
    if channel.kind == "log":
        log.warning("%s", message.text)
        return Delivery(str(channel), ok=True, attempts=1, delivered_at=_now())
    if channel.kind == "pipeline":  # needs the store and the alert: alerts/pipeline_channel.py
        reason = "a pipeline: channel is delivered by a monitor run, which queues the run"
        return Delivery(str(channel), ok=False, attempts=0, last_error=reason)
    if channel.kind == "webhook":
        send = webhook_sender(channel, egress or Egress())
    else:
        send = email_sender(channel)
    return _with_retries(channel, lambda: send(message, settings), settings)


def deliver_all(
    channels: Iterable[Channel],
    message: Message,
    *,
    settings: DeliverySettings | None = None,
    egress: Egress | None = None,
) -> list[Delivery]:
    """One delivery per channel, in parallel, so a dead webhook does not hold up the email;
    results in the channels' order."""
    found = list(channels)
    if not found:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(found)), thread_name_prefix="alerts") as pool:
        return list(
            pool.map(lambda c: deliver(c, message, settings=settings, egress=egress), found)
        )


def _with_retries(
    channel: Channel, attempt: Callable[[], None], settings: DeliverySettings
) -> Delivery:
    reason = ""
    for n in range(1, settings.attempts + 1):
        try:
            attempt()
            return Delivery(str(channel), ok=True, attempts=n, delivered_at=_now())
        except AttemptFailed as failure:
            reason, retry, wait_s = failure.reason, failure.retry, failure.wait_s
        except Exception as exc:  # a bug or an odd library error must not stop the run
            reason, retry, wait_s = f"unexpected error: {exc!r}", False, None
        if not retry:
            reason += "; not retried: another attempt would fail the same way"
            log.warning("alert to %s failed: %s", channel.display(), reason)
            return Delivery(str(channel), ok=False, attempts=n, last_error=reason)
        if n < settings.attempts:
            time.sleep(backoff_delay(n, settings, retry_after=wait_s))
    log.warning("alert to %s failed after %d attempts: %s", channel.display(), n, reason)
    return Delivery(str(channel), ok=False, attempts=settings.attempts, last_error=reason)


def backoff_delay(
    attempt: int, settings: DeliverySettings, *, retry_after: float | None = None
) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): backoff_s * 2**(attempt-1),
    jittered down to as little as half so that senders that failed together do not retry
    together; at least the server's Retry-After; never more than max_backoff_s."""
    delay = settings.backoff_s * 2 ** (attempt - 1)
    delay = random.uniform(delay / 2, delay)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, settings.max_backoff_s)


def _now() -> datetime:
    return datetime.now(UTC)
