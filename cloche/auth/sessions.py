"""Console sessions: an API token exchanged for a browser session, kept server-side in the store.

The browser holds a random session id; the store keeps only its sha256 (256 random bits, so a
plain hash suffices, as for tokens), so every worker and replica on the store sees the same
sessions. A session ends when it is signed out, idle longer than ``idle``, older than
``lifetime``, or when the token it came from is revoked.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from cloche import audit
from cloche.auth import tokens
from cloche.auth.roles import Principal
from cloche.errors import SessionExpired
from cloche.store.store import Store
from cloche.store.tables import ConsoleSessionRow, TokenRow, utcnow

# A write per request would make every page view a transaction; a minute of slack on the
# idle clock costs nothing.
TOUCH_EVERY = timedelta(minutes=1)
SIGN_IN_AGAIN = "sign in again at /console/sign-in"


@dataclass(frozen=True)
class Lifetimes:
    idle: timedelta
    lifetime: timedelta


@dataclass(frozen=True)
class ConsoleSession:
    principal: Principal
    csrf_token: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class NewSession(ConsoleSession):
    session_id: str  # for the cookie; never stored


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def sign_in(store: Store, token: str, *, lifetimes: Lifetimes, how: str = "token") -> NewSession:
    """Exchange an API token for a new session (Unauthorized when the token is not valid)."""
    principal = tokens.authenticate(store, token)
    return start_session(store, principal, lifetimes=lifetimes, how=how)


def start_session(
    store: Store, principal: Principal, *, lifetimes: Lifetimes, how: str = "token"
) -> NewSession:
    """A new session for an authenticated ``principal`` (which must come from a token)."""
    if principal.token_id is None:
        raise ValueError("a console session must come from a token, so revoking it ends them")
    session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = utcnow()
    with store.transaction() as tx:
        tx.execute(delete(ConsoleSessionRow).where(ConsoleSessionRow.expires_at < now))
        row = ConsoleSessionRow(
            id_hash=_hash(session_id),
            token_id=principal.token_id,
            actor=principal.actor,
            role=principal.role,
            csrf_secret=csrf,
            created_at=now,
            last_seen_at=now,
            expires_at=now + lifetimes.lifetime,
        )
        tx.add(row)
        audit.record(
            tx,
            actor=principal.actor,
            action="console.sign_in",
            resource_type="token",
            resource=principal.token_id,
            after={"how": how, "role": principal.role},
        )
    return NewSession(
        principal=principal,
        csrf_token=csrf,
        created_at=now,
        expires_at=row.expires_at,
        session_id=session_id,
    )


def lookup(
    store: Store, session_id: str, *, lifetimes: Lifetimes, now: datetime | None = None
) -> ConsoleSession:
    """The live session ``session_id`` names; SessionExpired for anything else."""
    now = now or utcnow()
    with store.transaction() as tx:
        found = tx.execute(
            select(ConsoleSessionRow, TokenRow.revoked_at)
            .join(TokenRow, TokenRow.id == ConsoleSessionRow.token_id)
            .where(ConsoleSessionRow.id_hash == _hash(session_id))
        ).first()
        if found is None:
            raise SessionExpired("you are not signed in to the console", hint=SIGN_IN_AGAIN)
        row, revoked_at = found
        last_seen = audit.as_utc(row.last_seen_at)
        ended = (
            revoked_at is not None
            or audit.as_utc(row.expires_at) <= now
            or now - last_seen > lifetimes.idle
        )
        if ended:
            tx.delete(row)  # committed: the raise comes after the transaction
        else:
            if now - last_seen > TOUCH_EVERY:
                row.last_seen_at = now
            live = ConsoleSession(
                principal=Principal(actor=row.actor, role=row.role, token_id=row.token_id),
                csrf_token=row.csrf_secret,
                created_at=audit.as_utc(row.created_at),
                expires_at=audit.as_utc(row.expires_at),
            )
    if ended:
        raise SessionExpired("your console session has ended", hint=SIGN_IN_AGAIN)
    return live


def csrf_matches(session: ConsoleSession, sent: str | None) -> bool:
    """Whether ``sent`` is this session's CSRF token (compared in constant time)."""
    return sent is not None and hmac.compare_digest(session.csrf_token.encode(), sent.encode())


def sign_out(store: Store, session_id: str) -> None:
    """End the session ``session_id`` names, if it still exists."""
    with store.transaction() as tx:
        row = tx.get(ConsoleSessionRow, _hash(session_id))
        if row is None:
            return
        audit.record(
            tx,
            actor=row.actor,
            action="console.sign_out",
            resource_type="token",
            resource=row.token_id,
        )
        tx.delete(row)
