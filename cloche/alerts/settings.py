"""How alert deliveries are made: retries, timeouts, and the SMTP server.

Holds only the NAMES of the environment variables with the SMTP credentials, so the settings
can be logged, dumped or stored without leaking them; the values are read at delivery time.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cloche.alerts.channels import EMAIL_ADDRESS, ENV_NAME

SmtpSecurity = Literal["starttls", "ssl", "none"]
DEFAULT_SMTP_PORTS: dict[str, int] = {"starttls": 587, "ssl": 465, "none": 25}


class DeliverySettings(BaseModel):
    """How deliveries are made. Holds only the NAMES of the environment variables with the
    SMTP credentials, so it can be logged, dumped or stored without leaking them."""

    # Inputs stay out of error messages: a password pasted into an *_env field must not be
    # echoed back into a log.
    model_config = ConfigDict(frozen=True, extra="ignore", hide_input_in_errors=True)

    smtp_host: str = Field(default="localhost", description="SMTP server for email channels")
    smtp_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="port of the SMTP server; default: 587 starttls, 465 ssl, 25 none",
    )
    smtp_security: SmtpSecurity = Field(
        default="starttls",
        description="starttls: upgrade when the server offers it (credentials are never sent "
        "without TLS); ssl: TLS from the start; none: plain text",
    )
    smtp_from: str = Field(
        default="cloche@localhost", description="the From address of alert emails"
    )
    smtp_user_env: str = Field(
        default="CLOCHE_ALERTS__SMTP_USER",
        description="name of the environment variable holding the SMTP user",
    )
    smtp_password_env: str = Field(
        default="CLOCHE_ALERTS__SMTP_PASSWORD",
        description="name of the environment variable holding the SMTP password",
    )
    smtp_ca_file: str | None = Field(
        default=None, description="CA bundle to verify the SMTP server; default: the system's"
    )
    attempts: int = Field(default=4, ge=1, le=20, description="tries per channel and message")
    backoff_s: float = Field(default=1.0, ge=0, description="seconds before the 2nd try; doubles")
    max_backoff_s: float = Field(
        default=60.0, ge=0, description="longest wait between tries, in seconds"
    )
    timeout_s: float = Field(default=10.0, gt=0, description="seconds each network step may take")

    @field_validator("smtp_user_env", "smtp_password_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not ENV_NAME.fullmatch(value):
            # Also catches a password pasted where its variable's name belongs; the value is
            # not echoed for that reason.
            raise ValueError("must be the name of an environment variable, like SMTP_PASSWORD")
        return value

    @field_validator("smtp_from")
    @classmethod
    def _address(cls, value: str) -> str:
        if not EMAIL_ADDRESS.fullmatch(value):
            raise ValueError(f"{value!r} is not an email address like cloche@example.com")
        return value

    @property
    def port(self) -> int:
        return self.smtp_port or DEFAULT_SMTP_PORTS[self.smtp_security]
