import pytest
from sqlalchemy import select

from cloche import audit
from cloche.auth import tokens
from cloche.auth.roles import Permission, Principal, authorize
from cloche.errors import Forbidden, InvalidInput, TokenNotFound, Unauthorized
from cloche.store.store import Store
from cloche.store.tables import TokenRow


def test_token_is_shown_once_and_stored_only_as_a_hash(store: Store) -> None:
    new = tokens.create_token(store, role="deployer", name="ci")
    with store.transaction() as session:
        row = session.scalars(select(TokenRow)).one()
        stored = " ".join(str(v) for v in vars(row).values())
    assert new.token.startswith("cl_") and new.token not in stored
    assert new.token.split("_", 2)[2] not in stored  # the secret itself may hold "_"
    assert "token" not in tokens.list_tokens(store)[0].model_dump()


def test_authenticate_returns_the_tokens_role(store: Store) -> None:
    new = tokens.create_token(store, role="viewer")
    principal = tokens.authenticate(store, new.token)
    assert principal.role == "viewer" and principal.actor == f"token:{new.id}"


@pytest.mark.parametrize(
    "bad", ["", "nonsense", "cl_", "cl_000000000000_x", "Bearer cl_abc", "cl_" + "a" * 200]
)
def test_bad_tokens_are_unauthorized(store: Store, bad: str) -> None:
    tokens.create_token(store, role="admin")
    with pytest.raises(Unauthorized, match="invalid or revoked"):
        tokens.authenticate(store, bad)


def test_a_tampered_secret_is_unauthorized(store: Store) -> None:
    new = tokens.create_token(store, role="admin")
    with pytest.raises(Unauthorized):
        tokens.authenticate(store, new.token[:-1] + ("A" if new.token[-1] != "A" else "B"))


def test_revoked_token_stops_working_and_is_audited(store: Store) -> None:
    new = tokens.create_token(store, role="admin", actor="alice")
    tokens.revoke_token(store, token_id=new.id, actor="bob")
    with pytest.raises(Unauthorized):
        tokens.authenticate(store, new.token)
    actions = [(e.action, e.actor) for e in audit.list_audit(store, resource_type="token")]
    assert actions == [("token.revoke", "bob"), ("token.create", "alice")]


def test_revoking_an_unknown_token_says_how_to_list(store: Store) -> None:
    with pytest.raises(TokenNotFound, match="no token"):
        tokens.revoke_token(store, token_id="feedbeef0000")


def test_unknown_role_is_refused(store: Store) -> None:
    with pytest.raises(InvalidInput, match="unknown role 'root'") as info:
        tokens.create_token(store, role="root")
    assert info.value.hint == "use one of: admin, publisher, deployer, edge, predictor, viewer"


@pytest.mark.parametrize(
    ("role", "permission", "allowed"),
    [
        ("viewer", Permission.READ, True),
        ("viewer", Permission.WRITE, False),
        ("predictor", Permission.PREDICT, True),
        ("predictor", Permission.READ, False),
        ("deployer", Permission.DEPLOY, True),
        ("deployer", Permission.PUBLISH, False),
        ("deployer", Permission.ADMIN, False),
        ("publisher", Permission.PUBLISH, True),
        ("publisher", Permission.DEPLOY, True),
        ("publisher", Permission.ADMIN, False),
        ("edge", Permission.EDGE_UPLOAD, True),
        ("edge", Permission.READ, False),
        ("edge", Permission.PREDICT, False),
        ("admin", Permission.ADMIN, True),
    ],
)
def test_roles_grant_exactly_their_permissions(role: str, permission: Permission, allowed: bool):
    principal = Principal(actor="t", role=role)
    if allowed:
        authorize(principal, permission)
    else:
        with pytest.raises(Forbidden, match=f"role '{role}' may not"):
            authorize(principal, permission)
