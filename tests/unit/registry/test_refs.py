import pytest

from cloche.errors import InvalidName, InvalidReference
from cloche.registry.refs import ModelRef, check_alias, check_name, parse_ref


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("churn", ModelRef("churn")),
        ("churn:3", ModelRef("churn", version=3)),
        ("churn@prod", ModelRef("churn", alias="prod")),
        ("churn@latest", ModelRef("churn")),
        ("fraud.v2-model_x", ModelRef("fraud.v2-model_x")),
    ],
)
def test_parse_ref_reads_name_version_and_alias(text: str, expected: ModelRef) -> None:
    assert parse_ref(text) == expected


def test_ref_prints_back_as_written() -> None:
    assert [str(parse_ref(r)) for r in ("a", "a:2", "a@prod")] == ["a", "a:2", "a@prod"]


@pytest.mark.parametrize("text", ["churn:0", "churn:-1", "churn:x", "churn:"])
def test_parse_ref_refuses_bad_versions(text: str) -> None:
    with pytest.raises(InvalidReference, match="version"):
        parse_ref(text)


@pytest.mark.parametrize(
    "name", ["", "-x", "x-", "a/b", "../etc", "a..b", "a b", "x" * 65, "é", "a:b:c"]
)
def test_check_name_refuses_unsafe_names(name: str) -> None:
    with pytest.raises((InvalidName, InvalidReference)):
        parse_ref(name) if ":" in name else check_name(name)


@pytest.mark.parametrize("alias", ["Prod", "1st", "latest", "a b", "", "x" * 65])
def test_check_alias_refuses_bad_aliases(alias: str) -> None:
    with pytest.raises(InvalidName):
        check_alias(alias)


def test_empty_reference_says_what_to_write() -> None:
    with pytest.raises(InvalidReference) as info:
        parse_ref("  ")
    assert "name@prod" in (info.value.hint or "")
