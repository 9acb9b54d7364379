"""Alert delivery to a webhook: one JSON POST, its failures told apart into worth retrying
(timeouts, 5xx, 408, 429 with Retry-After) and not (other 4xx, redirects, a bad URL, a refused
destination).

The destination is checked at every delivery (cloche/egress.py: a ``webhook:env:`` URL is read
only now, and a name's DNS answer may have changed since the channel was saved), and the request
goes to the address that was checked. A failure records the status and the standard reason for
it, never the answer's body: the receiver chooses that text, and it would be stored and shown.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from cloche.alerts.channels import Channel, check_url
from cloche.alerts.failure import AttemptFailed
from cloche.alerts.settings import DeliverySettings
from cloche.egress import Destination, Egress
from cloche.errors import DestinationRefused, InvalidInput, Unavailable

if TYPE_CHECKING:
    import httpx

    from cloche.alerts.message import Message


def webhook_sender(channel: Channel, egress: Egress) -> Callable[[Message, DeliverySettings], None]:
    def send(message: Message, settings: DeliverySettings) -> None:
        destination = _checked(_webhook_url(channel), egress)
        _post(destination, {"text": message.text, "alert": message.to_dict()}, settings)

    return send


def _checked(url: str, egress: Egress) -> Destination:
    try:
        return egress.check(url, what="webhook")
    except DestinationRefused as exc:  # the same answer next time: not retried
        raise AttemptFailed(exc.message, retry=False) from None
    except Unavailable as exc:  # DNS may answer on the next try
        raise AttemptFailed(exc.message, retry=True) from None


def _webhook_url(channel: Channel) -> str:
    """The channel's URL; for ``webhook:env:VAR``, read from the environment now, so a rotated
    URL takes effect at once. A missing or bad value fails the delivery without a retry, and
    is never echoed (it is the secret)."""
    if channel.url_env is None:
        assert channel.url is not None
        return channel.url
    url = os.environ.get(channel.url_env, "").strip()
    if not url:
        raise AttemptFailed(f"environment variable {channel.url_env} is not set", retry=False)
    try:
        return check_url(url)
    except InvalidInput:
        reason = f"environment variable {channel.url_env} does not hold an http(s) URL"
        raise AttemptFailed(reason, retry=False) from None


def _post(destination: Destination, body: dict[str, Any], settings: DeliverySettings) -> None:
    import httpx

    timeout = httpx.Timeout(settings.timeout_s)
    request = destination.httpx_arguments()
    headers = {"User-Agent": "cloche-alerts", **request["headers"]}
    try:
        # Redirects are not followed: a POST that moved is a configuration error to fix, and a
        # redirect could point anywhere. No proxy from the environment: the connection goes to
        # the address that was checked.
        with (
            httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client,
            client.stream(
                "POST",
                request["url"],
                json=body,
                headers=headers,
                extensions=request["extensions"],
            ) as response,
        ):
            if not response.is_success:
                _fail_on_status(response)
    except httpx.TimeoutException:
        raise AttemptFailed(f"no answer within {settings.timeout_s:g}s", retry=True) from None
    except httpx.TransportError as exc:
        reason = f"could not reach the webhook: {_transport_reason(exc)}"
        raise AttemptFailed(reason, retry=True) from None


def _fail_on_status(response: httpx.Response) -> None:
    status = response.status_code
    said = f"the webhook answered {status} {_reason(status)}"
    if 300 <= status < 400:
        raise AttemptFailed(f"{said} (redirects are not followed; use the final URL)", retry=False)
    # 408 and 429 mean "later"; other 4xx mean the request itself is wrong.
    retry = status >= 500 or status in (408, 429)
    raise AttemptFailed(said, retry=retry, wait_s=_retry_after(response))


def _reason(status: int) -> str:
    """The standard phrase for ``status``: the receiver's own reason phrase is its text too."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "(a status with no standard meaning)"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None


def _transport_reason(exc: Exception) -> str:
    # httpx messages can quote the URL, whose path may hold the hook's token.
    cause = exc.__cause__ or exc.__context__
    text = str(cause or exc) or type(exc).__name__
    return re.sub(r"https?://\S+", "<url>", text)
