"""Alert delivery by email over SMTP: STARTTLS or TLS, credentials read from the environment
at send time and never sent in plain text unless asked, and no password in any error."""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING

from cloche.alerts.channels import Channel
from cloche.alerts.failure import AttemptFailed
from cloche.alerts.settings import DeliverySettings

if TYPE_CHECKING:
    from cloche.alerts.message import Message

log = logging.getLogger("cloche.alerts")


def email_sender(channel: Channel) -> Callable[[Message, DeliverySettings], None]:
    def send(message: Message, settings: DeliverySettings) -> None:
        credentials = _credentials(settings)
        secrets = [credentials[1]] if credentials else []
        try:
            _smtp_send(_email(message, settings.smtp_from, channel.to), settings, credentials)
        except AttemptFailed as failure:
            # Belt and braces: no server or library message may carry the password onward.
            raise AttemptFailed(_scrub(failure.reason, secrets), retry=failure.retry) from None
        except Exception as exc:
            reason = _scrub(f"unexpected error: {exc!r}", secrets)
            raise AttemptFailed(reason, retry=False) from None

    return send


def _credentials(settings: DeliverySettings) -> tuple[str, str] | None:
    """(user, password) from the environment, read now so a rotated secret takes effect and
    no object that outlives the call holds it."""
    user = os.environ.get(settings.smtp_user_env, "")
    password = os.environ.get(settings.smtp_password_env, "")
    if bool(user) != bool(password):
        missing = settings.smtp_password_env if user else settings.smtp_user_env
        raise AttemptFailed(f"SMTP credentials are half set: {missing} is empty", retry=False)
    return (user, password) if user else None


def _email(message: Message, sender: str, to: tuple[str, ...]) -> EmailMessage:
    email = EmailMessage()
    email["Subject"] = message.subject
    email["From"] = sender
    email["To"] = ", ".join(to)
    email["Date"] = format_datetime(datetime.now(UTC))
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
                raise AttemptFailed(
                    f"{settings.smtp_host}:{settings.port} offers no TLS; refusing to send the "
                    "SMTP password in plain text (set smtp_security to none to allow it)",
                    retry=False,
                )
            smtp.login(*credentials)
        return smtp.send_message(email)


def _smtp_failure(
    exc: OSError | smtplib.SMTPException, settings: DeliverySettings
) -> AttemptFailed:
    """Say what went wrong, and whether trying again could help (4xx and network trouble)."""
    where = f"SMTP {settings.smtp_host}:{settings.port}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = _refusals(exc.recipients)
        return AttemptFailed(f"{where} refused every recipient: {refused}", retry=_transient(exc))
    if isinstance(exc, smtplib.SMTPResponseException):
        said = exc.smtp_error
        text = said.decode(errors="replace") if isinstance(said, bytes) else str(said)
        return AttemptFailed(f"{where} answered {exc.smtp_code} {text}", retry=exc.smtp_code < 500)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return AttemptFailed(f"{where}: {exc}", retry=False)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return AttemptFailed(f"TLS with {where} failed: {exc.verify_message}", retry=False)
    if _timed_out(exc):
        return AttemptFailed(f"{where} gave no answer within {settings.timeout_s:g}s", retry=True)
    return AttemptFailed(f"{where}: {exc or type(exc).__name__}", retry=True)


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
