"""Alert delivery against real servers on loopback: an HTTP webhook receiver and an SMTP server
(aiosmtpd), both in threads; plus ports that refuse or never answer."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cloche.alerts.channels import parse_channel
from cloche.alerts.delivery import Delivery, deliver, deliver_all
from cloche.alerts.digest import AlertMessage, Breach
from cloche.alerts.settings import DeliverySettings
from cloche.egress import Egress
from tests.integration._receivers import Mailbox, Webhook, smtp_receiver, webhook_receiver

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
MESSAGE = AlertMessage(
    monitor="churn-drift",
    endpoint="churn",
    run_at=NOW,
    window_start=NOW - timedelta(hours=1),
    window_end=NOW,
    breaches=(
        Breach("drift:tenure", 0.41, 0.3, "Jensen-Shannon divergence, log base 2"),
        Breach("drift:spend", 0.52, 0.3, "Jensen-Shannon divergence, log base 2"),
    ),
)
# The receivers of these tests listen on loopback, which deliveries refuse unless allowed.
LOOPBACK = Egress.from_allow("127.0.0.1")
FAST = {"attempts": 3, "backoff_s": 0.01, "timeout_s": 1.0}
PASSWORD = "pa55-w0rd-that-must-not-leak"


def fast(**overrides: Any) -> DeliverySettings:
    return DeliverySettings(**{**FAST, **overrides})


# --- a webhook receiver --------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[Webhook]:
    with webhook_receiver("/hooks/T0/B0/s3cr3t-token") as found:
        yield found


def hook(receiver: Webhook) -> Any:
    return parse_channel(f"webhook:{receiver.url}")


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


def test_a_webhook_gets_the_text_and_the_structured_alert(receiver: Webhook) -> None:
    d = deliver(hook(receiver), MESSAGE, settings=fast(), egress=LOOPBACK)
    assert (d.ok, d.attempts, d.last_error) == (True, 1, None)
    assert d.delivered_at is not None and d.channel == f"webhook:{receiver.url}"
    [body] = receiver.bodies
    assert body["text"] == MESSAGE.text
    assert body["text"].startswith("cloche: 2 features drifted on endpoint churn")
    assert body["alert"] == MESSAGE.to_dict()
    assert receiver.content_types == ["application/json"]


def test_a_webhook_that_fails_twice_gets_it_on_the_third_try(receiver: Webhook) -> None:
    receiver.fail_first = 2
    d = deliver(hook(receiver), MESSAGE, settings=fast(), egress=LOOPBACK)
    assert (d.ok, d.attempts) == (True, 3)
    assert len(receiver.bodies) == 3


def test_a_webhook_that_stays_down_is_reported_not_raised(
    receiver: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.status = 503
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="cloche.alerts"):
        d = deliver(hook(receiver), MESSAGE, settings=fast(), egress=LOOPBACK)
    assert time.monotonic() - started < 2
    assert (d.ok, d.attempts, d.delivered_at) == (False, 3, None)
    assert d.last_error is not None and "answered 503 Service Unavailable" in d.last_error
    assert len(receiver.bodies) == 3
    # The hook's token (its path) stays out of the log.
    assert "s3cr3t-token" not in caplog.text and "failed after 3 attempts" in caplog.text


def test_a_client_error_is_not_retried(receiver: Webhook) -> None:
    receiver.status = 400
    d = deliver(hook(receiver), MESSAGE, settings=fast(), egress=LOOPBACK)
    assert (d.ok, d.attempts) == (False, 1)
    assert d.last_error is not None
    assert "answered 400 Bad Request" in d.last_error and "not retried" in d.last_error
    # The receiver's own words (its body, its reason phrase) are never stored.
    assert "invalid_payload" not in d.last_error and "no text field" not in d.last_error
    assert len(receiver.bodies) == 1


@pytest.mark.parametrize("status", [408, 429])
def test_later_please_is_retried(receiver: Webhook, status: int) -> None:
    receiver.fail_first, receiver.status = 0, status
    receiver.headers = {"Retry-After": "0"}
    d = deliver(hook(receiver), MESSAGE, settings=fast(attempts=2), egress=LOOPBACK)
    assert (d.ok, d.attempts) == (False, 2)
    assert d.last_error is not None and "not retried" not in d.last_error


def test_a_redirect_is_not_followed(receiver: Webhook) -> None:
    with webhook_receiver("/elsewhere") as elsewhere:
        receiver.status = 302
        receiver.headers = {"Location": elsewhere.url}
        d = deliver(hook(receiver), MESSAGE, settings=fast(), egress=LOOPBACK)
    assert (d.ok, d.attempts) == (False, 1)
    assert d.last_error is not None and "redirects are not followed" in d.last_error
    assert elsewhere.bodies == [] and len(receiver.bodies) == 1


def test_webhook_to_loopback_is_refused_unless_allowed(receiver: Webhook) -> None:
    refused = deliver(hook(receiver), MESSAGE, settings=fast())
    assert (refused.ok, refused.attempts) == (False, 1)  # the same answer next time
    assert refused.last_error is not None and "CLOCHE_EGRESS__ALLOW" in refused.last_error
    assert "s3cr3t-token" not in refused.last_error
    assert receiver.bodies == []
    assert deliver(hook(receiver), MESSAGE, settings=fast(), egress=LOOPBACK).ok
    assert len(receiver.bodies) == 1


# Loopback in the notations a URL parser, a resolver or inet_aton accepts.
NOTATIONS = ["2130706433", "0x7f000001", "0177.0.0.1", "127.1", "[::ffff:127.0.0.1]", "localhost"]


@pytest.mark.parametrize("host", NOTATIONS)
def test_every_notation_of_loopback_is_refused_at_delivery(receiver: Webhook, host: str) -> None:
    port = receiver.url.split(":")[2].split("/")[0]
    channel = parse_channel(f"webhook:http://{host}:{port}/hook")
    d = deliver(channel, MESSAGE, settings=fast())
    assert d.ok is False and d.last_error is not None
    assert "loopback" in d.last_error and "CLOCHE_EGRESS__ALLOW" in d.last_error
    assert receiver.bodies == []


@pytest.mark.parametrize("host", ["2130706433", "0x7f000001", "localhost"])
def test_an_allowed_address_is_reached_in_any_notation(receiver: Webhook, host: str) -> None:
    port = receiver.url.split(":")[2].split("/")[0]
    d = deliver(parse_channel(f"webhook:http://{host}:{port}/x"), MESSAGE, egress=LOOPBACK)
    assert d.ok, d.last_error
    assert len(receiver.bodies) == 1


def test_an_env_webhook_is_checked_when_it_is_sent(
    receiver: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPS_HOOK", receiver.url)
    channel = parse_channel("webhook:env:OPS_HOOK")
    refused = deliver(channel, MESSAGE, settings=fast())
    assert refused.last_error is not None and "CLOCHE_EGRESS__ALLOW" in refused.last_error
    assert "s3cr3t-token" not in refused.last_error and receiver.bodies == []
    assert deliver(channel, MESSAGE, settings=fast(), egress=LOOPBACK).ok


def test_a_refused_webhook_fails_quickly_without_raising(closed_port: int) -> None:
    channel = parse_channel(f"webhook:http://127.0.0.1:{closed_port}/hooks/s3cr3t-token")
    started = time.monotonic()
    d = deliver(channel, MESSAGE, settings=fast(), egress=LOOPBACK)
    assert time.monotonic() - started < 2
    assert (d.ok, d.attempts) == (False, 3)
    assert d.last_error is not None and "could not reach the webhook" in d.last_error
    assert "s3cr3t-token" not in d.last_error


def test_a_webhook_that_never_answers_is_cut_off_by_the_timeout(silent_port: int) -> None:
    channel = parse_channel(f"webhook:http://127.0.0.1:{silent_port}/hook")
    started = time.monotonic()
    d = deliver(channel, MESSAGE, settings=fast(attempts=2, timeout_s=0.3), egress=LOOPBACK)
    elapsed = time.monotonic() - started
    assert 0.6 <= elapsed < 3
    assert (d.ok, d.attempts) == (False, 2)
    assert d.last_error == "no answer within 0.3s"


# --- an SMTP server ------------------------------------------------------------------------


@pytest.fixture
def smtp() -> Iterator[Mailbox]:
    """No TLS; AUTH offered in plain text (only loopback tests may do that)."""
    with smtp_receiver(credentials=("alerts", PASSWORD), auth_require_tls=False) as box:
        yield box


def mail_settings(box: Mailbox, **overrides: Any) -> DeliverySettings:
    return fast(
        smtp_host="127.0.0.1", smtp_port=box.port, smtp_from="cloche@ml.example", **overrides
    )


def test_an_email_goes_to_every_recipient_with_the_digest(smtp: Mailbox) -> None:
    channel = parse_channel("email:ops@example.com,ml@example.com")
    d = deliver(channel, MESSAGE, settings=mail_settings(smtp))
    assert (d.ok, d.attempts, d.last_error) == (True, 1, None)
    [got] = smtp.received
    assert got.mail_from == "cloche@ml.example"
    assert got.rcpt_tos == ["ops@example.com", "ml@example.com"]
    assert (got.login, got.tls) == (None, False)  # no credentials set: no AUTH
    assert got.message["Subject"] == MESSAGE.subject
    assert got.message["To"] == "ops@example.com, ml@example.com"
    assert got.message["Message-ID"].endswith("@ml.example>")
    assert got.message.get_content_type() == "text/plain"
    body = got.message.get_payload(decode=True)
    assert isinstance(body, bytes)
    assert body.decode().replace("\r\n", "\n").strip() == MESSAGE.text


def test_smtp_auth_reads_the_credentials_from_the_environment(
    smtp: Mailbox, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("ALERT_SMTP_USER", "alerts")
    monkeypatch.setenv("ALERT_SMTP_PASSWORD", PASSWORD)
    settings = mail_settings(
        smtp,
        smtp_security="none",  # plain-text AUTH is an explicit choice
        smtp_user_env="ALERT_SMTP_USER",
        smtp_password_env="ALERT_SMTP_PASSWORD",
    )
    with caplog.at_level(logging.DEBUG):
        d = deliver(parse_channel("email:ops@example.com"), MESSAGE, settings=settings)
    assert d.ok, d.last_error
    [got] = smtp.received
    assert got.login == "alerts"
    shown = [repr(settings), str(settings), settings.model_dump_json(), repr(d), str(d)]
    shown += [json.dumps(d.to_dict()), caplog.text]
    assert all(PASSWORD not in text for text in shown)


def test_a_wrong_password_is_not_retried_and_not_echoed(
    smtp: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOCHE_ALERTS__SMTP_USER", "alerts")
    monkeypatch.setenv("CLOCHE_ALERTS__SMTP_PASSWORD", "wrong-" + PASSWORD)
    d = deliver(
        parse_channel("email:ops@example.com"),
        MESSAGE,
        settings=mail_settings(smtp, smtp_security="none"),
    )
    assert (d.ok, d.attempts) == (False, 1)
    assert d.last_error is not None and "535" in d.last_error
    assert PASSWORD not in d.last_error and PASSWORD not in repr(d)
    assert smtp.received == []


def test_the_password_is_never_sent_without_tls_unless_asked(
    smtp: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOCHE_ALERTS__SMTP_USER", "alerts")
    monkeypatch.setenv("CLOCHE_ALERTS__SMTP_PASSWORD", PASSWORD)
    # The default, starttls, finds no STARTTLS on this server.
    d = deliver(parse_channel("email:ops@example.com"), MESSAGE, settings=mail_settings(smtp))
    assert (d.ok, d.attempts) == (False, 1)
    assert d.last_error is not None and "refusing to send the SMTP password" in d.last_error
    assert smtp.logins == [] and smtp.received == []


def test_a_refused_smtp_server_fails_quickly_without_raising(closed_port: int) -> None:
    settings = fast(smtp_host="127.0.0.1", smtp_port=closed_port)
    started = time.monotonic()
    d = deliver(parse_channel("email:ops@example.com"), MESSAGE, settings=settings)
    assert time.monotonic() - started < 2
    assert (d.ok, d.attempts) == (False, 3)
    assert d.last_error is not None and f"127.0.0.1:{closed_port}" in d.last_error


def test_an_smtp_server_that_never_greets_is_cut_off(silent_port: int) -> None:
    settings = fast(smtp_host="127.0.0.1", smtp_port=silent_port, attempts=2, timeout_s=0.3)
    started = time.monotonic()
    d = deliver(parse_channel("email:ops@example.com"), MESSAGE, settings=settings)
    assert time.monotonic() - started < 3
    assert (d.ok, d.attempts) == (False, 2)
    assert d.last_error is not None and "no answer within 0.3s" in d.last_error


def test_one_dead_channel_does_not_stop_the_others(
    smtp: Mailbox, closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    channels = [
        parse_channel(f"webhook:http://127.0.0.1:{closed_port}/hook"),
        parse_channel("email:ops@example.com"),
        parse_channel("log"),
    ]
    with caplog.at_level(logging.WARNING, logger="cloche.alerts"):
        found = deliver_all(channels, MESSAGE, settings=mail_settings(smtp), egress=LOOPBACK)
    assert [d.ok for d in found] == [False, True, True]
    assert [d.channel for d in found] == [str(c) for c in channels]
    assert all(isinstance(d, Delivery) for d in found)
    assert len(smtp.received) == 1


# --- STARTTLS with a self-signed certificate -------------------------------------------------


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, by the cryptography package if installed, else by the
    system's openssl command; skips the test when neither is there (nothing is downloaded)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        _with_cryptography(cert, key)
        return cert, key
    except ImportError:
        pass
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no cryptography package and no openssl command to make a certificate")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return cert, key


def _with_cryptography(cert_path: Path, key_path: Path) -> None:
    import ipaddress

    from cryptography import x509  # type: ignore[import-not-found,unused-ignore]
    from cryptography.hazmat.primitives import hashes, serialization  # type: ignore[import-not-found,unused-ignore]
    from cryptography.hazmat.primitives.asymmetric import ec  # type: ignore[import-not-found,unused-ignore]
    from cryptography.x509.oid import NameOID  # type: ignore[import-not-found,unused-ignore]

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@pytest.fixture
def tls_smtp(tmp_path: Path) -> Iterator[tuple[Mailbox, Path]]:
    """STARTTLS required, AUTH only after it."""
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with smtp_receiver(
        credentials=("alerts", PASSWORD), tls_context=context, require_starttls=True
    ) as box:
        yield box, cert


def test_starttls_then_auth(
    tls_smtp: tuple[Mailbox, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    box, cert = tls_smtp
    monkeypatch.setenv("CLOCHE_ALERTS__SMTP_USER", "alerts")
    monkeypatch.setenv("CLOCHE_ALERTS__SMTP_PASSWORD", PASSWORD)
    settings = mail_settings(box, smtp_ca_file=str(cert))  # security: starttls, the default
    d = deliver(parse_channel("email:ops@example.com"), MESSAGE, settings=settings)
    assert d.ok, d.last_error
    [got] = box.received
    assert (got.login, got.tls) == ("alerts", True)


def test_an_untrusted_certificate_is_refused_without_a_retry(
    tls_smtp: tuple[Mailbox, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    box, _ = tls_smtp
    monkeypatch.setenv("CLOCHE_ALERTS__SMTP_USER", "alerts")
    monkeypatch.setenv("CLOCHE_ALERTS__SMTP_PASSWORD", PASSWORD)
    d = deliver(parse_channel("email:ops@example.com"), MESSAGE, settings=mail_settings(box))
    assert (d.ok, d.attempts) == (False, 1)
    assert d.last_error is not None and "certificate" in d.last_error
    assert box.logins == [] and box.received == []
