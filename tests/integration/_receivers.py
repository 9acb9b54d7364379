"""Real alert receivers on loopback: a webhook endpoint and an SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.integration._loopback_http import QuietHandler, loopback_server


@dataclass
class Webhook:
    """Records every POST; fails the first ``fail_first`` with 500, then answers ``status``
    (with ``headers``)."""

    url: str = ""
    fail_first: int = 0
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)


class _Hook(QuietHandler):
    hook: Webhook  # set on the subclass each receiver builds

    def do_POST(self) -> None:
        self.hook.bodies.append(json.loads(self.body()))
        self.hook.content_types.append(self.headers.get("Content-Type", ""))
        status = self.hook.status
        if self.hook.fail_first > 0:
            self.hook.fail_first -= 1
            status = 500
        answer = b"ok" if status < 300 else b"invalid_payload: no text field"
        self.answer(status, answer, self.hook.headers)


@contextmanager
def webhook_receiver(path: str = "/hook") -> Iterator[Webhook]:
    """An HTTP server on a free loopback port, its URL ending in ``path``."""
    hook = Webhook()
    with loopback_server(type("Hook", (_Hook,), {"hook": hook}), "test-webhook") as port:
        hook.url = f"http://127.0.0.1:{port}{path}"
        yield hook


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: Message
    login: str | None
    tls: bool


@dataclass
class Mailbox:
    host: str = "127.0.0.1"
    port: int = 0
    received: list[Received] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)  # every AUTH attempt

    @property
    def messages(self) -> list[Message]:
        return [r.message for r in self.received]


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content
        assert isinstance(content, bytes)
        data = session.auth_data
        self.box.received.append(
            Received(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                message=message_from_bytes(content),
                login=data.login.decode() if isinstance(data, LoginPassword) else None,
                tls=session.ssl is not None,
            )
        )
        return "250 Message accepted for delivery"


class _LoopbackController(Controller):
    """aiosmtpd's controller, on a port the OS picks (no race with other processes): its own
    readiness check needs the real port."""

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


def _authenticator(box: Mailbox, credentials: tuple[str, str]) -> Any:
    def check(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any):
        assert isinstance(data, LoginPassword)
        login, password = data.login.decode(), data.password.decode()
        box.logins.append((login, password))
        ok = (login, password) == credentials
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    return check


@contextmanager
def smtp_receiver(
    *, credentials: tuple[str, str] | None = None, **smtp_kwargs: Any
) -> Iterator[Mailbox]:
    """An aiosmtpd server on a free loopback port that keeps every message it receives; with
    ``credentials``, it offers AUTH and accepts those alone. ``smtp_kwargs`` go to aiosmtpd
    (``tls_context``, ``require_starttls``, ``auth_require_tls``)."""
    box = Mailbox()
    if credentials is not None:
        smtp_kwargs["authenticator"] = _authenticator(box, credentials)
    controller = _LoopbackController(
        _Handler(box),
        hostname="127.0.0.1",
        port=0,
        server_hostname="smtp.test",
        ready_timeout=5,
        **smtp_kwargs,
    )
    controller.start()
    box.port = controller.port
    try:
        yield box
    finally:
        controller.stop()
