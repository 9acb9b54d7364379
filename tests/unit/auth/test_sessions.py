"""Console sessions: hash-only storage, idle and absolute expiry, revocation, sign-out."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from cloche import audit
from cloche.auth import sessions, tokens
from cloche.auth.sessions import Lifetimes
from cloche.errors import SessionExpired, Unauthorized
from cloche.store.store import Store
from cloche.store.tables import ConsoleSessionRow, utcnow

LIFETIMES = Lifetimes(idle=timedelta(hours=1), lifetime=timedelta(hours=8))


def _signed_in(store: Store, role: str = "viewer") -> tuple[tokens.NewToken, sessions.NewSession]:
    token = tokens.create_token(store, role=role)
    return token, sessions.sign_in(store, token.token, lifetimes=LIFETIMES)


def test_a_session_is_stored_only_as_a_hash_with_its_token_and_role(store: Store) -> None:
    token, new = _signed_in(store)
    with store.transaction() as tx:
        row = tx.scalars(select(ConsoleSessionRow)).one()
        stored = " ".join(str(v) for v in vars(row).values())
    assert new.session_id not in stored and token.token not in stored
    assert (row.token_id, row.role, row.actor) == (token.id, "viewer", f"token:{token.id}")


def test_lookup_finds_the_sessions_principal_and_csrf_token(store: Store) -> None:
    token, new = _signed_in(store, role="deployer")
    found = sessions.lookup(store, new.session_id, lifetimes=LIFETIMES)
    assert found.principal.role == "deployer" and found.principal.token_id == token.id
    assert sessions.csrf_matches(found, new.csrf_token)
    assert not sessions.csrf_matches(found, new.csrf_token[:-1] + "x")
    assert not sessions.csrf_matches(found, None)


def test_an_idle_session_ends_and_its_row_is_deleted(store: Store) -> None:
    _, new = _signed_in(store)
    later = utcnow() + timedelta(hours=1, minutes=1)
    with pytest.raises(SessionExpired):
        sessions.lookup(store, new.session_id, lifetimes=LIFETIMES, now=later)
    with store.transaction() as tx:
        assert tx.scalars(select(ConsoleSessionRow)).all() == []


def test_use_keeps_a_session_alive_until_its_absolute_lifetime(store: Store) -> None:
    _, new = _signed_in(store)
    start = utcnow()
    for minutes in range(50, 8 * 60, 50):  # never idle for an hour
        sessions.lookup(
            store, new.session_id, lifetimes=LIFETIMES, now=start + timedelta(minutes=minutes)
        )
    with pytest.raises(SessionExpired):
        sessions.lookup(store, new.session_id, lifetimes=LIFETIMES, now=start + timedelta(hours=8))


def test_revoking_the_token_ends_its_sessions(store: Store) -> None:
    token, new = _signed_in(store)
    tokens.revoke_token(store, token_id=token.id)
    with pytest.raises(SessionExpired):
        sessions.lookup(store, new.session_id, lifetimes=LIFETIMES)


def test_sign_out_ends_the_session_and_both_are_audited(store: Store) -> None:
    _, new = _signed_in(store)
    sessions.sign_out(store, new.session_id)
    with pytest.raises(SessionExpired):
        sessions.lookup(store, new.session_id, lifetimes=LIFETIMES)
    actions = [e.action for e in audit.list_audit(store, resource_type="token")]
    assert actions[:2] == ["console.sign_out", "console.sign_in"]
    sessions.sign_out(store, new.session_id)  # twice: nothing left to end, no error


@pytest.mark.parametrize("bad", ["", "cl_000000000000_x", "not a token"])
def test_sign_in_with_a_bad_token_is_unauthorized_and_starts_nothing(
    store: Store, bad: str
) -> None:
    with pytest.raises(Unauthorized):
        sessions.sign_in(store, bad, lifetimes=LIFETIMES)
    with store.transaction() as tx:
        assert tx.scalars(select(ConsoleSessionRow)).all() == []


def test_an_unknown_session_id_is_not_signed_in(store: Store) -> None:
    with pytest.raises(SessionExpired):
        sessions.lookup(store, "made-up", lifetimes=LIFETIMES)


def test_signing_in_clears_sessions_past_their_lifetime(store: Store) -> None:
    _signed_in(store)
    with store.transaction() as tx:
        tx.scalars(select(ConsoleSessionRow)).one().expires_at = utcnow() - timedelta(seconds=1)
    _signed_in(store)
    with store.transaction() as tx:
        assert len(tx.scalars(select(ConsoleSessionRow)).all()) == 1
