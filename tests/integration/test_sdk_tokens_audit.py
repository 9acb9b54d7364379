"""Tokens and the audit log through both SDK transports."""

from __future__ import annotations

import pytest

import cloche
from cloche.errors import InvalidInput, TokenNotFound


def test_tokens_are_created_listed_and_revoked(client: cloche.Client) -> None:
    new = client.tokens.create(role="viewer", name="dashboards")
    assert new.token.startswith(f"cl_{new.id}_") and new.role == "viewer"
    # Over HTTP the server's local admin token (the one the SDK sends) is listed too.
    [listed] = [t for t in client.tokens.list() if t.name != "local admin"]
    assert listed.id == new.id and "token" not in listed.model_dump()
    assert client.tokens.revoke(new.id).revoked_at is not None
    with pytest.raises(TokenNotFound):
        client.tokens.revoke("000000000000")
    with pytest.raises(InvalidInput):
        client.tokens.create(role="emperor")


def test_audit_filters_by_resource_type(client: cloche.Client) -> None:
    token = client.tokens.create(role="predictor")
    entries = [e for e in client.audit.list(resource_type="token") if e.actor != "system"]
    assert [(e.action, e.resource) for e in entries] == [("token.create", token.id)]
    assert entries[0].after == {"role": "predictor", "name": ""}
    assert client.audit.list(resource_type="model") == []
