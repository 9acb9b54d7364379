"""Where alerts go: a webhook (Slack, Mattermost, Teams-style incoming hooks), email over SMTP,
or the server log.

A channel is written and stored as a spec string (``webhook:https://...``, ``email:a@b,c@d``,
``log``); nothing secret belongs in it, so URLs carrying credentials are refused. SMTP
credentials are read from environment variables at delivery time; the settings hold only the
variables' names. So can a webhook's URL, whose path is often its only secret:
``webhook:env:VAR`` stores the variable's name and reads the URL from it at each delivery.

:func:`deliver` is synchronous and never raises for a channel that is down: it retries with
exponential backoff and jitter, bounds each attempt with a timeout, and returns a
:class:`Delivery` saying what happened. Call it in a thread from async code.
"""

from __future__ import annotations

import logging
import os
import random
import re
import smtplib
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cloche.errors import InvalidInput

if TYPE_CHECKING:
    import httpx

    from cloche.alerts.digest import AlertMessage

log = logging.getLogger("cloche.alerts")

ChannelKind = Literal["webhook", "email", "log"]
SmtpSecurity = Literal["starttls", "ssl", "none"]

CHANNEL_FORMS = "webhook:https://HOST/PATH, webhook:env:VARIABLE, email:ADDRESS[,ADDRESS...] or log"
MAX_URL = 2048
MAX_ERROR_BODY = 200  # characters of a failing webhook's answer kept in the error
DEFAULT_SMTP_PORTS: dict[str, int] = {"starttls": 587, "ssl": 465, "none": 25}

# A practical subset of RFC 5322: dot-atom local part and a hostname. No quoted local parts,
# no display names, no whitespace or angle brackets (nothing that could inject a header).
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(rf"{_LOCAL}@{_LABEL}(?:\.{_LABEL})*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Channel:
    """One destination. ``str(channel)`` is the canonical spec, which ``parse_channel`` reads
    back; it is what the database stores."""

    kind: ChannelKind
    url: str | None = None  # webhook
    url_env: str | None = None  # webhook: the environment variable holding its URL instead
    to: tuple[str, ...] = ()  # email recipients

    def __str__(self) -> str:
        if self.kind == "webhook" and self.url_env:
            return f"webhook:env:{self.url_env}"
        if self.kind == "webhook":
            return f"webhook:{self.url}"
        if self.kind == "email":
            return "email:" + ",".join(self.to)
        return "log"

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": self.kind, "spec": str(self)}
        if self.kind == "webhook" and self.url_env:
            body["url_env"] = self.url_env
        elif self.kind == "webhook":
            body["url"] = self.url
        elif self.kind == "email":
            body["to"] = list(self.to)
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
        return parse_channel(str(kind))

    def display(self) -> str:
        """For logs and messages: a webhook's path and query often hold its token, so only
        the scheme and host are shown."""
        if self.kind == "webhook" and self.url:
            parts = urlsplit(self.url)
            return f"webhook:{parts.scheme}://{parts.netloc}/..."
        return str(self)


def parse_channel(spec: str) -> Channel:
    """Read ``webhook:URL``, ``webhook:env:VARIABLE``, ``email:ADDR[,ADDR...]`` or ``log``."""
    text = spec.strip()
    kind, sep, target = text.partition(":")
    kind = kind.strip().lower()
    if kind == "log" and not sep:
        return Channel("log")
    if kind == "webhook" and sep and target.strip().lower().startswith("env:"):
        return Channel("webhook", url_env=_check_env_name(target.strip()[4:].strip()))
    if kind == "webhook" and sep:
        return Channel("webhook", url=_check_url(target.strip()))
    if kind == "email" and sep:
        return Channel("email", to=_check_addresses(target))
    raise _bad(f"alert channel {_shown(text)!r} is not one of: {CHANNEL_FORMS}")


def _check_url(url: str) -> str:
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
    if not _ENV_NAME.fullmatch(name):
        # Not echoed: it may be the URL itself, pasted where the variable's name belongs.
        raise _bad("webhook:env: needs the name of an environment variable, like SLACK_HOOK")
    return name


def _check_addresses(target: str) -> tuple[str, ...]:
    addresses: list[str] = []
    for raw in target.split(","):
        address = raw.strip()
        if not address:
            raise _bad(f"email channel {target.strip()!r} has an empty address")
        if len(address) > 254 or not _EMAIL.fullmatch(address):
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


class DeliverySettings(BaseModel):
    """How deliveries are made. Holds only the NAMES of the environment variables with the
    SMTP credentials, so it can be logged, dumped or stored without leaking them."""

    # Inputs stay out of error messages: a password pasted into an *_env field must not be
    # echoed back into a log.
    model_config = ConfigDict(frozen=True, extra="ignore", hide_input_in_errors=True)

    smtp_host: str = Field(default="localhost", description="SMTP server for email channels")
    smtp_port: int | None = Field(
        default=None, ge=1, le=65535, description="default: 587 starttls, 465 ssl, 25 none"
    )
    smtp_security: SmtpSecurity = Field(
        default="starttls",
        description="starttls: upgrade when the server offers it (credentials are never sent "
        "without TLS); ssl: TLS from the start; none: plain text",
    )
    smtp_from: str = Field(default="cloche@localhost", description="the From address")
    smtp_user_env: str = Field(
        default="CLOCHE_ALERTS__SMTP_USER", description="environment variable with the user"
    )
    smtp_password_env: str = Field(
        default="CLOCHE_ALERTS__SMTP_PASSWORD",
        description="environment variable with the password",
    )
    smtp_ca_file: str | None = Field(
        default=None, description="CA bundle to verify the SMTP server; default: the system's"
    )
    attempts: int = Field(default=4, ge=1, le=20, description="tries per channel and message")
    backoff_s: float = Field(default=1.0, ge=0, description="wait before the 2nd try; doubles")
    max_backoff_s: float = Field(default=60.0, ge=0, description="longest wait between tries")
    timeout_s: float = Field(default=10.0, gt=0, description="bound on each network step")

    @field_validator("smtp_user_env", "smtp_password_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not _ENV_NAME.fullmatch(value):
            # Also catches a password pasted where its variable's name belongs; the value is
            # not echoed for that reason.
            raise ValueError("must be the name of an environment variable, like SMTP_PASSWORD")
        return value

    @field_validator("smtp_from")
    @classmethod
    def _address(cls, value: str) -> str:
        if not _EMAIL.fullmatch(value):
            raise ValueError(f"{value!r} is not an email address like cloche@example.com")
        return value

    @property
    def port(self) -> int:
        return self.smtp_port or DEFAULT_SMTP_PORTS[self.smtp_security]


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


class _Failed(Exception):
    """One attempt failed. ``retry`` says whether another attempt could succeed; ``wait_s``
    is the server's Retry-After, if it gave one."""

    def __init__(self, reason: str, *, retry: bool, wait_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry
        self.wait_s = wait_s


def deliver(
    channel: Channel, message: AlertMessage, *, settings: DeliverySettings | None = None
) -> Delivery:
    """Send ``message`` on ``channel``; never raises for a channel that stays down."""
    settings = settings or DeliverySettings()
    if channel.kind == "log":
        log.warning("%s", message.text)
        return Delivery(str(channel), ok=True, attempts=1, delivered_at=_now())
    send = _webhook_sender(channel) if channel.kind == "webhook" else _email_sender(channel)
    return _with_retries(channel, lambda: send(message, settings), settings)


def deliver_all(
    channels: Iterable[Channel],
    message: AlertMessage,
    *,
    settings: DeliverySettings | None = None,
) -> list[Delivery]:
    """One delivery per channel, in parallel, so a dead webhook does not hold up the email;
    results in the channels' order."""
    found = list(channels)
    if not found:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(found)), thread_name_prefix="alerts") as pool:
        return list(pool.map(lambda c: deliver(c, message, settings=settings), found))


def _with_retries(
    channel: Channel, attempt: Callable[[], None], settings: DeliverySettings
) -> Delivery:
    reason = ""
    for n in range(1, settings.attempts + 1):
        try:
            attempt()
            return Delivery(str(channel), ok=True, attempts=n, delivered_at=_now())
        except _Failed as failure:
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


# --- webhook ---------------------------------------------------------------------------


def _webhook_sender(channel: Channel) -> Callable[[AlertMessage, DeliverySettings], None]:
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
        raise _Failed(f"environment variable {channel.url_env} is not set", retry=False)
    try:
        return _check_url(url)
    except InvalidInput:
        reason = f"environment variable {channel.url_env} does not hold an http(s) URL"
        raise _Failed(reason, retry=False) from None


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
        raise _Failed(f"no answer within {settings.timeout_s:g}s", retry=True) from None
    except httpx.TransportError as exc:
        reason = f"could not reach the webhook: {_transport_reason(exc)}"
        raise _Failed(reason, retry=True) from None


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
        raise _Failed(f"{said} (redirects are not followed; use the final URL)", retry=False)
    # 408 and 429 mean "later"; other 4xx mean the request itself is wrong.
    retry = status >= 500 or status in (408, 429)
    raise _Failed(said, retry=retry, wait_s=_retry_after(response))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None


def _transport_reason(exc: Exception) -> str:
    # httpx messages can quote the URL, whose path may hold the hook's token.
    cause = exc.__cause__ or exc.__context__
    text = str(cause or exc) or type(exc).__name__
    return re.sub(r"https?://\S+", "<url>", text)


# --- email -----------------------------------------------------------------------------


def _email_sender(channel: Channel) -> Callable[[AlertMessage, DeliverySettings], None]:
    def send(message: AlertMessage, settings: DeliverySettings) -> None:
        credentials = _credentials(settings)
        secrets = [credentials[1]] if credentials else []
        try:
            _smtp_send(_email(message, settings.smtp_from, channel.to), settings, credentials)
        except _Failed as failure:
            # Belt and braces: no server or library message may carry the password onward.
            raise _Failed(_scrub(failure.reason, secrets), retry=failure.retry) from None
        except Exception as exc:
            raise _Failed(_scrub(f"unexpected error: {exc!r}", secrets), retry=False) from None

    return send


def _credentials(settings: DeliverySettings) -> tuple[str, str] | None:
    """(user, password) from the environment, read now so a rotated secret takes effect and
    no object that outlives the call holds it."""
    user = os.environ.get(settings.smtp_user_env, "")
    password = os.environ.get(settings.smtp_password_env, "")
    if bool(user) != bool(password):
        missing = settings.smtp_password_env if user else settings.smtp_user_env
        raise _Failed(f"SMTP credentials are half set: {missing} is empty", retry=False)
    return (user, password) if user else None


def _email(message: AlertMessage, sender: str, to: tuple[str, ...]) -> EmailMessage:
    email = EmailMessage()
    email["Subject"] = message.subject
    email["From"] = sender
    email["To"] = ", ".join(to)
    email["Date"] = format_datetime(_now())
    email["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1])
    email.set_content(message.text)
    return email


def _smtp_send(
    email: EmailMessage, settings: DeliverySettings, credentials: tuple[str, str] | None
) -> None:
    try:
        refused = _smtp_session(email, settings, credentials)
    except (OSError, smtplib.SMTPException) as exc:
        raise _smtp_failure(exc, settings) from None
    if refused:
        # Some recipients got it: a success, but the rest is worth telling.
        log.warning("alert email: the server refused %s", _refusals(refused))


def _smtp_session(
    email: EmailMessage, settings: DeliverySettings, credentials: tuple[str, str] | None
) -> dict[str, tuple[int, bytes]]:
    with _connect(settings) as smtp:
        secure = _secure(smtp, settings)
        if credentials:
            if not secure and settings.smtp_security != "none":
                raise _Failed(
                    f"{settings.smtp_host}:{settings.port} offers no TLS; refusing to send the "
                    "SMTP password in plain text (set smtp_security to none to allow it)",
                    retry=False,
                )
            smtp.login(*credentials)
        return smtp.send_message(email)


def _smtp_failure(exc: OSError | smtplib.SMTPException, settings: DeliverySettings) -> _Failed:
    """Say what went wrong, and whether trying again could help (4xx and network trouble)."""
    where = f"SMTP {settings.smtp_host}:{settings.port}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = _refusals(exc.recipients)
        return _Failed(f"{where} refused every recipient: {refused}", retry=_transient(exc))
    if isinstance(exc, smtplib.SMTPResponseException):
        said = exc.smtp_error
        text = said.decode(errors="replace") if isinstance(said, bytes) else str(said)
        return _Failed(f"{where} answered {exc.smtp_code} {text}", retry=exc.smtp_code < 500)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return _Failed(f"{where}: {exc}", retry=False)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _Failed(f"TLS with {where} failed: {exc.verify_message}", retry=False)
    if _timed_out(exc):
        return _Failed(f"{where} gave no answer within {settings.timeout_s:g}s", retry=True)
    return _Failed(f"{where}: {exc or type(exc).__name__}", retry=True)


def _timed_out(exc: BaseException) -> bool:
    # smtplib reports a read that timed out as "Connection unexpectedly closed".
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, TimeoutError):
            return True
        seen = seen.__context__
    return False


def _connect(settings: DeliverySettings) -> smtplib.SMTP:
    host, port, timeout = settings.smtp_host, settings.port, settings.timeout_s
    if settings.smtp_security == "ssl":
        return smtplib.SMTP_SSL(host, port, timeout=timeout, context=_tls_context(settings))
    return smtplib.SMTP(host, port, timeout=timeout)


def _secure(smtp: smtplib.SMTP, settings: DeliverySettings) -> bool:
    """Upgrade to TLS when asked and offered; whether the session is now encrypted."""
    if settings.smtp_security == "ssl":
        return True
    smtp.ehlo()
    if settings.smtp_security == "starttls" and smtp.has_extn("starttls"):
        smtp.starttls(context=_tls_context(settings))
        smtp.ehlo()
        return True
    return False


def _tls_context(settings: DeliverySettings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=settings.smtp_ca_file)


def _refusals(refused: Mapping[str, tuple[int, bytes]]) -> str:
    return ", ".join(f"{addr} ({code})" for addr, (code, _) in refused.items())


def _transient(exc: smtplib.SMTPRecipientsRefused) -> bool:
    return any(400 <= code < 500 for code, _ in exc.recipients.values())


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _now() -> datetime:
    return datetime.now(UTC)
