import pytest

from cloche.config import Settings
from cloche.errors import InvalidInput
from cloche.sizes import format_size, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4GiB", 4 * 2**30),
        ("600MiB", 600 * 2**20),
        ("600mib", 600 * 2**20),
        ("512M", 512 * 2**20),
        ("1.5G", int(1.5 * 2**30)),
        ("2 GB", 2 * 2**30),
        ("64KiB", 64 * 1024),
        ("1048576", 2**20),
        (" 1T ", 2**40),
    ],
)
def test_sizes_as_users_write_them(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("lots", "is not a memory size"),
        ("GiB", "is not a memory size"),
        ("4 PiB", "is not a memory size"),
        ("-1G", "is not a memory size"),
        ("0", "more than 0 bytes"),
        ("0.1", "more than 0 bytes"),
        ("2048TiB", "more than 1 PiB"),
        ("9" * 100, "is not a memory size"),
    ],
)
def test_bad_sizes_say_which_forms_work(text: str, says: str) -> None:
    with pytest.raises(InvalidInput, match=says) as bad:
        parse_size(text)
    assert "4GiB" in (bad.value.hint or "")


def test_sizes_print_in_binary_units() -> None:
    assert format_size(600 * 2**20) == "600 MiB"
    assert format_size(int(1.5 * 2**30)) == "1.5 GiB"
    assert format_size(512) == "512 B"
    assert format_size(None) == "-"


def test_the_setting_takes_a_size_and_defaults_to_no_limit() -> None:
    assert Settings().serving.model_memory is None
    assert Settings(serving={"model_memory": "600MiB"}).serving.model_memory == 600 * 2**20
    with pytest.raises(ValueError, match="not a memory size"):
        Settings(serving={"model_memory": "six hundred"})
