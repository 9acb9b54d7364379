"""``send_alert``: a message to the monitoring channels, as a monitor's digest goes out."""

from __future__ import annotations

from typing import NamedTuple

import cloche
from cloche.alerts.channels import parse_channel
from cloche.errors import StepFailed
from cloche.pipelines.component import component


class AlertSent(NamedTuple):
    delivered: list  # type: ignore[type-arg]
    failed: list  # type: ignore[type-arg]


@component
def send_alert(
    channels: list[str], title: str, text: str = "", fail_if_undelivered: bool = True
) -> AlertSent:
    """Send ``title`` and ``text`` to ``channels`` (``webhook:URL``, ``webhook:env:VAR``,
    ``email:ADDR``, ``log``) with the monitors' retries and egress checks; returns the channels
    it reached and those it did not (webhook paths masked). Reaching none fails the step unless
    ``fail_if_undelivered`` is False."""
    with cloche.Client() as client:
        deliveries = client.alerts.send(list(channels), title, text)
    delivered = [parse_channel(d.channel).display() for d in deliveries if d.ok]
    failed = [
        f"{parse_channel(d.channel).display()}: {d.last_error}" for d in deliveries if not d.ok
    ]
    print(f"sent {title!r}: delivered to {delivered or 'none'}; failed: {failed or 'none'}")
    if fail_if_undelivered and not delivered:
        raise StepFailed(f"the alert reached no channel: {'; '.join(failed)}")
    return AlertSent(delivered, failed)
