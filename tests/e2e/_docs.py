"""Running a docs page's examples with sybil: Python, doctest and shell blocks, in page order.

Sybil parses the Markdown (its fenced-code lexer); this module adds only evaluators for the two
shell languages the pages use:

- ```console: a transcript. Lines starting with `$ ` are commands (a line ending with `\\` or
  inside an open quote continues on the next), the lines after a command are what it printed,
  compared with what it prints now (doctest's checker: `...` matches anything, runs of
  whitespace are equal). A command that exits non-zero fails the page unless the page shows
  what it printed.
- ```bash: a script, run with `set -euo pipefail`; nothing is compared, it must exit 0.

Every command runs in bash in the page's folder. The environment carries over from one command
to the next and from block to block (`export`, `unset`), as in one terminal; a command left in
the background (`cloche serve ... &`) is stopped, with its process group, when the page ends.
"""

from __future__ import annotations

import doctest
import os
import re
import shlex
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from sybil import Document, Example, Sybil
from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser

COMMAND_SECONDS = 120.0  # one command; a loaded 2-core machine imports scikit-learn slowly
CHECKER = doctest.OutputChecker()
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@dataclass
class Shell:
    """The terminal a page's shell examples share: folder, environment, background groups."""

    cwd: Path
    env: dict[str, str]
    groups: list[int] = field(default_factory=list)

    def run(self, command: str, *, strict: bool = False) -> tuple[int, str]:
        """Run ``command`` with bash; its exit code and output (stdout and stderr, interleaved)."""
        with tempfile.TemporaryDirectory() as scratch:
            state = Path(scratch) / "env"
            script = (
                "set -euo pipefail\n" if strict else ""
            ) + f"{command}\n__rc=$?\nenv -0 > {state}\nexit $__rc\n"
            # Output to a file, not a pipe: a command left in the background keeps its copy of
            # the pipe open, and reading to the end would wait for it.
            out = Path(scratch) / "out"
            with out.open("wb") as sink:
                proc = subprocess.Popen(
                    ["bash", "-c", script],
                    cwd=self.cwd,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own group, so its background jobs can be ended
                )
                self.groups.append(proc.pid)
                try:
                    code = proc.wait(timeout=COMMAND_SECONDS)
                except subprocess.TimeoutExpired:
                    self._kill(proc.pid)
                    raise AssertionError(
                        f"timed out after {COMMAND_SECONDS} s: {command}"
                    ) from None
            if state.exists():
                pairs = state.read_bytes().split(b"\0")
                self.env = dict(p.decode().split("=", 1) for p in pairs if b"=" in p)
            return code, out.read_text(errors="replace")

    def close(self) -> None:
        """End whatever a page left running in the background."""
        for group in self.groups:
            self._kill(group)

    @staticmethod
    def _kill(group: int) -> None:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGTERM)


def transcript(source: str) -> Iterator[tuple[str, str]]:
    """The (command, shown output) pairs of a console block."""
    command: list[str] = []
    shown: list[str] = []
    for line in source.splitlines():
        if command and unfinished("\n".join(command)):
            command.append(line)
        elif line.startswith("$ "):
            if command:
                yield "\n".join(command), "\n".join(shown)
            command, shown = [line[2:]], []
        elif command:
            shown.append(line)
        elif line.strip():
            raise AssertionError(f"console output before any `$ ` command: {line!r}")
    if command:
        yield "\n".join(command), "\n".join(shown)


def unfinished(command: str) -> bool:
    """Whether the next line continues ``command``: a trailing `\\` or a quote left open."""
    if command.endswith("\\"):
        return True
    try:
        shlex.split(command)
    except ValueError:  # "No closing quotation"
        return True
    return False


def shell(example: Example) -> Shell:
    found = example.namespace.get("__shell__")
    if not isinstance(found, Shell):
        raise AssertionError("no shell prepared for this page (see tests/e2e/test_docs.py)")
    return found


def evaluate_console(example: Example) -> str | None:
    terminal = shell(example)
    for command, shown in transcript(str(example.parsed)):
        code, output = terminal.run(command)
        want = shown.rstrip() + "\n" if shown.strip() else ""
        if want and not CHECKER.check_output(want, output, FLAGS):
            return f"$ {command}\nthe page shows:\n{want}it printed (exit {code}):\n{output}"
        if code != 0 and not want:
            return f"$ {command}\nexited {code}:\n{output}"
    return None


def evaluate_bash(example: Example) -> str | None:
    code, output = shell(example).run(str(example.parsed), strict=True)
    return None if code == 0 else f"the block exited {code}:\n{output}"


def page_parser(*, shells: bool) -> Sybil:
    """Python blocks (doctest when they start with `>>>`), and the shell blocks if ``shells``."""
    parsers: list[object] = [PythonCodeBlockParser(doctest_optionflags=FLAGS)]
    if shells:
        parsers += [
            CodeBlockParser("console", evaluate_console),
            CodeBlockParser("bash", evaluate_bash),
        ]
    return Sybil(parsers=parsers)  # type: ignore[arg-type]


def run_page(page: Path, *, shells: bool, terminal: Shell | None = None) -> int:
    """Evaluate every example of ``page`` in order, sharing one namespace; how many ran."""
    document: Document = page_parser(shells=shells).parse(page)
    document.namespace["__shell__"] = terminal
    count = 0
    try:
        for example in document:
            example.evaluate()
            count += 1
    finally:
        close_clients(document.namespace)
    return count


def close_clients(namespace: dict[str, object]) -> None:
    """Close the clients a page's Python blocks opened (cloche's, tritonclient's): a reader
    leaves them to the end of the script, and the test must not leave their sockets open."""
    for value in namespace.values():
        module = type(value).__module__
        if module.startswith(("cloche.client", "tritonclient")) and hasattr(value, "close"):
            value.close()


SHELL_BLOCK = re.compile(r"^```(console|bash)\s*$", re.MULTILINE)


@contextmanager
def page_shell(cwd: Path, env: dict[str, str]) -> Iterator[Shell]:
    """A page's terminal in ``cwd`` with ``env``; what it left in the background ends with it."""
    terminal = Shell(cwd, env)
    try:
        yield terminal
    finally:
        terminal.close()
