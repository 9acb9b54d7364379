"""The local admin token: one live admin token in an owner-only file, reused while it works."""

from __future__ import annotations

import stat

import pytest

from cloche.auth import tokens
from cloche.auth.local_token import (
    ensure_local_token,
    read_local_token,
    require_local_token,
    token_path,
)
from cloche.errors import LocalTokenNotFound
from cloche.store.store import Store


def test_local_token_file_is_owner_only_and_holds_an_admin_token(store: Store) -> None:
    path = ensure_local_token(store)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = read_local_token(store.home)
    assert secret is not None
    assert tokens.authenticate(store, secret).role == "admin"


def test_local_token_is_reused_while_it_authenticates(store: Store) -> None:
    ensure_local_token(store)
    first = read_local_token(store.home)
    ensure_local_token(store)
    assert read_local_token(store.home) == first
    assert [t.name for t in tokens.list_tokens(store)] == ["local admin"]


def test_a_widened_local_token_file_is_narrowed_again(store: Store) -> None:
    path = ensure_local_token(store)
    path.chmod(0o644)
    ensure_local_token(store)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_revoked_local_token_is_replaced(store: Store) -> None:
    ensure_local_token(store)
    old = read_local_token(store.home)
    assert old is not None
    tokens.revoke_token(store, token_id=tokens.authenticate(store, old).token_id or "")
    ensure_local_token(store)
    new = read_local_token(store.home)
    assert new is not None and new != old
    assert tokens.authenticate(store, new).role == "admin"
    assert stat.S_IMODE(token_path(store.home).stat().st_mode) == 0o600


def test_missing_local_token_says_to_start_the_server(store: Store) -> None:
    with pytest.raises(LocalTokenNotFound) as info:
        require_local_token(store.home)
    assert "cloche up" in (info.value.hint or "")
