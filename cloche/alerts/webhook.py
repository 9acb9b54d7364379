"""Alert delivery to a webhook: one JSON POST, its failures told apart into worth retrying
(timeouts, 5xx, 408, 429 with Retry-After) and not (other 4xx, redirects, a bad URL)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cloche.alerts.channels import Channel, check_url
from cloche.alerts.failure import AttemptFailed
from cloche.alerts.settings import DeliverySettings
from cloche.errors import InvalidInput

if TYPE_CHECKING:
    import httpx

    from cloche.alerts.digest import AlertMessage

MAX_ERROR_BODY = 200  # characters of a failing webhook's answer kept in the error


def webhook_sender(channel: Channel) -> Callable[[AlertMessage, DeliverySettings], None]:
    def send(message: AlertMessage, settings: DeliverySettings) -> None:
        url = _webhook_url(channel)
        _post(url, {"text": message.text, "alert": message.to_dict()}, settings)

    return send


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


def _post(url: str, body: dict[str, Any], settings: DeliverySettings) -> None:
    import httpx

    timeout = httpx.Timeout(settings.timeout_s)
    headers = {"User-Agent": "cloche-alerts"}
    try:
        # Redirects are not followed: a POST that moved is a configuration error to fix.
        with (
            httpx.Client(timeout=timeout, follow_redirects=False) as client,
            client.stream("POST", url, json=body, headers=headers) as response,
        ):
            if not response.is_success:
                _fail_on_status(response, _head(response))
    except httpx.TimeoutException:
        raise AttemptFailed(f"no answer within {settings.timeout_s:g}s", retry=True) from None
    except httpx.TransportError as exc:
        reason = f"could not reach the webhook: {_transport_reason(exc)}"
        raise AttemptFailed(reason, retry=True) from None


def _head(response: httpx.Response) -> str:
    """The start of an error answer: enough to explain it, never a whole (endless) body."""
    data = b""
    for chunk in response.iter_bytes():
        data += chunk
        if len(data) >= 4 * MAX_ERROR_BODY:
            break
    text = data.decode(response.encoding or "utf-8", errors="replace")
    return " ".join(text.split())[:MAX_ERROR_BODY]


def _fail_on_status(response: httpx.Response, body: str) -> None:
    status = response.status_code
    said = f"the webhook answered {status} {response.reason_phrase}"
    if body:
        said += f": {body}"
    if 300 <= status < 400:
        raise AttemptFailed(f"{said} (redirects are not followed; use the final URL)", retry=False)
    # 408 and 429 mean "later"; other 4xx mean the request itself is wrong.
    retry = status >= 500 or status in (408, 429)
    raise AttemptFailed(said, retry=retry, wait_s=_retry_after(response))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None


def _transport_reason(exc: Exception) -> str:
    # httpx messages can quote the URL, whose path may hold the hook's token.
    cause = exc.__cause__ or exc.__context__
    text = str(cause or exc) or type(exc).__name__
    return re.sub(r"https?://\S+", "<url>", text)
