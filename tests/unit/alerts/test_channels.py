"""Channel specs, delivery settings and records, backoff, and the log channel (no network)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from cloche.alerts.channels import CHANNEL_FORMS, Channel, parse_channel
from cloche.alerts.delivery import Delivery, backoff_delay, deliver, deliver_all
from cloche.alerts.digest import AlertMessage, Breach
from cloche.alerts.settings import DeliverySettings
from cloche.errors import InvalidInput

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
MESSAGE = AlertMessage(
    monitor="churn-drift",
    endpoint="churn",
    run_at=NOW,
    window_start=NOW - timedelta(hours=1),
    window_end=NOW,
    breaches=(Breach("drift:tenure", 0.41, 0.3),),
)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("log", Channel("log")),
        ("  LOG ", Channel("log")),
        ("webhook:https://hooks.example/x", Channel("webhook", url="https://hooks.example/x")),
        (
            "Webhook: http://127.0.0.1:9000/hook?sig=abc",
            Channel("webhook", url="http://127.0.0.1:9000/hook?sig=abc"),
        ),
        ("email:ops@example.com", Channel("email", to=("ops@example.com",))),
        (
            "email: ops@example.com , on-call+ml@team.example.org,ops@example.com",
            Channel("email", to=("ops@example.com", "on-call+ml@team.example.org")),
        ),
        ("email:root@localhost", Channel("email", to=("root@localhost",))),
        ("webhook:env:SLACK_HOOK", Channel("webhook", url_env="SLACK_HOOK")),
        ("webhook: ENV: _hook_2 ", Channel("webhook", url_env="_hook_2")),
    ],
)
def test_valid_specs(spec: str, expected: Channel) -> None:
    assert parse_channel(spec) == expected


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("", "is not one of"),
        ("slack:https://hooks.example/x", "is not one of"),
        ("https://hooks.example/x", "is not one of"),
        ("log:extra", "is not one of"),
        ("email", "is not one of"),
        ("webhook:", "needs a URL"),
        ("webhook:ftp://hooks.example/x", "must start with http:// or https://"),
        ("webhook:file:///etc/passwd", "must start with http:// or https://"),
        ("webhook:hooks.example/x", "must start with http:// or https://"),
        ("webhook:https:///x", "has no host"),
        ("webhook:https://hooks.example:99999/x", "is not a valid URL"),
        ("webhook:https://hooks.example/a b", "whitespace"),
        ("webhook:https://" + "a" * 3000 + ".example/", "longer than 2048 characters"),
        ("webhook:https://hooks.example/\x00", "control characters"),
        ("email:", "empty address"),
        ("email:ops@example.com,,dev@example.com", "empty address"),
        ("email:ops", "is not an email address"),
        ("email:ops@", "is not an email address"),
        ("email:ops@exa mple.com", "is not an email address"),
        ("email:Ops <ops@example.com>", "is not an email address"),
        ("email:ops@example.com\r\nBcc: all@example.com", "is not an email address"),
        ("email:ops@-example.com", "is not an email address"),
        ("email:ops@example..com", "is not an email address"),
    ],
)
def test_bad_specs_say_what_is_accepted(spec: str, says: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_channel(spec)
    assert says in caught.value.message
    assert caught.value.hint == f"alert channels are {CHANNEL_FORMS}"
    assert caught.value.code == "invalid_input" and caught.value.exit_code == 2


@pytest.mark.parametrize(
    "spec",
    [
        "webhook:https://bot:s3cret@hooks.example/x",
        "webhook:https://s3cret@hooks.example/x",
        "webhook:https://bot:s3cret@hooks.example:99999/x",
        "webhook:ftp://bot:s3cret@hooks.example/x",
        "webhook:https://bot:s3c@ret@hooks.example/x",
        "webhook:https://bot:s3cret@hooks.example:99999/x@",
    ],
)
def test_credentials_in_a_url_are_refused_and_never_echoed(spec: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_channel(spec)
    assert "s3c" not in str(caught.value.to_dict())


@pytest.mark.parametrize(
    "spec",
    [
        "log",
        "webhook:https://hooks.example/services/T0/B0/x?a=1",
        "webhook:env:SLACK_HOOK",
        "email:a@example.com,b@ex.org",
    ],
)
def test_specs_round_trip(spec: str) -> None:
    channel = parse_channel(spec)
    assert str(channel) == spec
    assert parse_channel(str(channel)) == channel
    assert Channel.from_dict(channel.to_dict()) == channel
    without_spec = {k: v for k, v in channel.to_dict().items() if k != "spec"}
    assert Channel.from_dict(without_spec) == channel


def test_to_dict_fields() -> None:
    assert parse_channel("email:a@example.com").to_dict() == {
        "kind": "email",
        "spec": "email:a@example.com",
        "to": ["a@example.com"],
    }
    assert parse_channel("log").to_dict() == {"kind": "log", "spec": "log"}


def test_from_dict_validates() -> None:
    with pytest.raises(InvalidInput):
        Channel.from_dict({"kind": "webhook", "url": "ftp://x"})
    with pytest.raises(InvalidInput):
        Channel.from_dict({"kind": "pager"})


def test_display_hides_a_webhooks_token() -> None:
    channel = parse_channel("webhook:https://hooks.example/services/T0/B0/tok3n")
    assert channel.display() == "webhook:https://hooks.example/..."
    assert parse_channel("email:a@example.com").display() == "email:a@example.com"


# --- settings ----------------------------------------------------------------------------


def test_settings_defaults() -> None:
    s = DeliverySettings()
    assert (s.attempts, s.backoff_s, s.timeout_s) == (4, 1.0, 10.0)
    assert (s.smtp_security, s.port) == ("starttls", 587)
    assert s.smtp_user_env == "CLOCHE_ALERTS__SMTP_USER"
    assert s.smtp_password_env == "CLOCHE_ALERTS__SMTP_PASSWORD"
    assert DeliverySettings(smtp_security="ssl").port == 465
    assert DeliverySettings(smtp_security="none").port == 25
    assert DeliverySettings(smtp_security="none", smtp_port=2525).port == 2525


@pytest.mark.parametrize(
    "kwargs",
    [
        {"smtp_password_env": "hunter2!"},
        {"smtp_user_env": "1USER"},
        {"smtp_from": "not an address"},
        {"smtp_security": "tls"},
        {"attempts": 0},
        {"timeout_s": 0},
        {"backoff_s": -1},
        {"smtp_port": 70000},
    ],
)
def test_bad_settings(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError) as caught:
        DeliverySettings(**kwargs)  # type: ignore[arg-type]
    if "smtp_password_env" in kwargs:
        assert "hunter2" not in str(caught.value)


def test_as_a_settings_section_the_password_variable_is_read_but_never_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The default variable names sit under CLOCHE_ALERTS__, which pydantic-settings parses
    into an ``alerts`` section: it must be ignored there, not refused and not stored."""
    from cloche.config import Settings

    class WithAlerts(Settings):
        alerts: DeliverySettings = DeliverySettings()

    monkeypatch.setenv("CLOCHE_ALERTS__SMTP_USER", "alerts")
    monkeypatch.setenv("CLOCHE_ALERTS__SMTP_PASSWORD", "hunter2")
    monkeypatch.setenv("CLOCHE_ALERTS__ATTEMPTS", "2")
    settings = WithAlerts()
    assert settings.alerts.attempts == 2
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert "hunter2" not in shown


def test_settings_are_frozen() -> None:
    with pytest.raises(ValidationError):
        DeliverySettings().attempts = 9  # type: ignore[misc]


# --- backoff -----------------------------------------------------------------------------


def test_backoff_doubles_with_jitter_down_to_half() -> None:
    s = DeliverySettings(backoff_s=1.0, max_backoff_s=100)
    for attempt, full in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0)):
        delays = [backoff_delay(attempt, s) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in delays)
        assert len(set(delays)) > 1  # jittered


def test_backoff_honours_retry_after_and_the_cap() -> None:
    s = DeliverySettings(backoff_s=1.0, max_backoff_s=5)
    assert backoff_delay(1, s, retry_after=3) == 3
    assert backoff_delay(1, s, retry_after=3600) == 5
    assert backoff_delay(10, s) == 5
    assert backoff_delay(3, DeliverySettings(backoff_s=0)) == 0


# --- records and the log channel -----------------------------------------------------------


def test_delivery_round_trips_through_json() -> None:
    ok = Delivery("log", ok=True, attempts=1, delivered_at=NOW)
    failed = Delivery("email:a@example.com", ok=False, attempts=4, last_error="down")
    for d in (ok, failed):
        assert Delivery.from_dict(d.to_dict()) == d
    assert ok.to_dict()["delivered_at"] == "2025-06-01T12:00:00+00:00"


def test_the_log_channel_writes_the_digest_at_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="cloche.alerts"):
        d = deliver(parse_channel("log"), MESSAGE, settings=DeliverySettings())
    assert d.ok and d.attempts == 1 and d.channel == "log" and d.last_error is None
    assert d.delivered_at is not None
    [record] = caplog.records
    assert record.name == "cloche.alerts" and record.levelno == logging.WARNING
    assert record.getMessage() == MESSAGE.text


def test_half_set_smtp_credentials_fail_without_a_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOCHE_ALERTS__SMTP_USER", "alerts")
    d = deliver(parse_channel("email:a@example.com"), MESSAGE, settings=DeliverySettings())
    assert not d.ok and d.attempts == 1
    assert d.last_error is not None
    assert "CLOCHE_ALERTS__SMTP_PASSWORD is empty" in d.last_error
    assert "not retried" in d.last_error


def test_deliver_all_keeps_the_channels_order(caplog: pytest.LogCaptureFixture) -> None:
    channels = [parse_channel("log"), parse_channel("log")]
    with caplog.at_level(logging.WARNING, logger="cloche.alerts"):
        assert [d.channel for d in deliver_all(channels, MESSAGE)] == ["log", "log"]
    assert deliver_all([], MESSAGE) == []


def test_a_pipeline_channel_names_a_pipeline_and_reads_back() -> None:
    channel = parse_channel(" pipeline:retrain ")
    assert (channel.kind, channel.pipeline, str(channel)) == (
        "pipeline",
        "retrain",
        "pipeline:retrain",
    )
    assert Channel.from_dict(channel.to_dict()) == channel
    with pytest.raises(InvalidInput, match="does not name a pipeline"):
        parse_channel("pipeline:../etc")
