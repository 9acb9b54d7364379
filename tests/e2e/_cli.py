"""Running the CLI in-process, as the e2e tests do: its output, exit code and JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from cloche.cli.app import app

runner = CliRunner()


def cloche(
    *args: str | Path, input: str | None = None, env: dict[str, str] | None = None
) -> Result:
    """``cloche ARGS...`` with ``input`` on stdin and ``env`` added to the environment."""
    return runner.invoke(app, [str(a) for a in args], input=input, env=env)


def ok_json(*args: str | Path) -> Any:
    """``cloche ARGS... --json``, which must succeed; its parsed output."""
    result = cloche(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)
