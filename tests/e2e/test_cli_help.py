"""`cloche --help` and every command's help, as a user reads them: what is listed, how values are
named, and text shown as written."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.e2e._cli import cloche
from tests.e2e._servers import cloche_command

WIDE = {"COLUMNS": "240"}  # one help line per option, so a phrase is never split by wrapping


def test_root_help_lists_every_command_the_edge_ones_included() -> None:
    result = cloche("--help", env=WIDE)
    assert result.exit_code == 0, result.output
    for command in (
        "models", "endpoints", "batch", "monitors", "alerts", "baselines", "tokens",
        "audit", "logs", "feedback", "up", "export", "notebook", "serve", "edge",
    ):  # fmt: skip
        assert re.search(rf"│ {command} +\S", result.stdout), command
    assert "Serve an exported bundle" in result.stdout
    assert "cloche edge sync DIR --to URL" in result.stdout


def test_the_console_script_lists_serve_and_edge_too() -> None:
    done = subprocess.run(cloche_command("--help"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "serve" in done.stdout and "edge" in done.stdout


@pytest.mark.parametrize("args", [("edge",), ("edge", "--help"), ("edge", "-h")])
def test_edge_without_a_subcommand_shows_its_commands(args: tuple[str, ...]) -> None:
    done = subprocess.run(cloche_command(*args), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "sync" in done.stdout and "Upload an edge server's spooled payload log" in done.stdout
    assert "cloche serve DIR" in done.stdout


def test_edge_help_through_typer_is_the_same_as_through_the_console_script() -> None:
    result = cloche("edge", "--help")
    assert result.exit_code == 0, result.output
    assert "cloche edge sync DIR --to URL" in result.stdout


def test_help_text_keeps_its_brackets() -> None:
    result = cloche("up", "--help", env=WIDE)
    assert result.exit_code == 0, result.output
    assert "Needs cloche[grpc]." in result.stdout


@pytest.mark.parametrize(
    "command",
    [
        (),
        ("up",),
        ("models", "list"),
        ("models", "upload"),
        ("batch", "run"),
        ("tokens", "create"),
        ("logs",),
        ("export",),
        ("monitors", "create"),
    ],
    ids=lambda c: " ".join(c) or "cloche",
)
def test_help_names_values_as_users_expect(command: tuple[str, ...]) -> None:
    result = cloche(*command, "--help", env=WIDE)
    assert result.exit_code == 0, result.output
    shown = result.stdout
    assert not re.search(r"<(bool|str|int|float|int range|float range|Path)>", shown), shown
    assert not re.search(r"\{[A-Z_]+\}", shown), shown  # no {MODEL_REF} in the usage line
    assert re.search(r"│ +--help +Show this message", shown), shown  # a flag names no value


def test_a_required_argument_is_written_bare_and_options_name_their_value() -> None:
    result = cloche("batch", "run", "--help", env=WIDE)
    assert "Usage: cloche batch run [OPTIONS] MODEL_REF" in result.stdout
    assert re.search(r"--chunk-rows +INTEGER \[x>=1\]", result.stdout)
    assert re.search(r"--output +-o +TEXT", result.stdout)
    assert re.search(r"--overwrite +--no-overwrite +Replace", result.stdout)
