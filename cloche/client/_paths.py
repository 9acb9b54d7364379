"""The input and output a user names for a batch job, made absolute where the user typed them.

A job runs in the server's process (`cloche up` for queued jobs and every schedule run), whose
working folder is not the user's: ``data/in.csv`` typed in ``~/project`` must reach it as
``/home/me/project/data/in.csv``. The conversion lives here, in the SDK, because both the CLI
and SDK users call ``client.batch`` over either transport; the server refuses relative paths
(cloche/batch/places.py ``check_absolute``) rather than guess whose folder they meant.

The paths are also checked here, before anything is sent, so a typo fails at once and not at a
schedule's first run: an input must name a file, a folder or a pattern matching a file, and an
output folder must exist or be creatable. Object-store URLs pass through untouched. Against a
server on another host an absolute path names the server's files, so only relative ones (which
can only mean files here) are checked.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from cloche.batch.places import has_pattern, is_url
from cloche.errors import InvalidInput


def job_paths(input: str, output: str, *, here: bool = True) -> tuple[str, str]:
    """``input`` and ``output`` as absolute paths (URLs untouched), checked to exist.

    ``here``: whether the server reads this machine's files (in-process, or a loopback URL).
    """
    return _place(input, "input", here), _place(output, "output", here)


def _place(value: str, what: str, here: bool) -> str:
    if is_url(value):
        return value
    expanded = os.path.expanduser(value)
    typed_relative = not os.path.isabs(expanded)
    # abspath also drops a trailing slash and '.' parts, so joined run folders show no '//'.
    path = os.path.abspath(expanded)
    if here or typed_relative:
        (_check_input if what == "input" else _check_output)(path, value)
    return path


def _check_input(path: str, given: str) -> None:
    if has_pattern(path):
        if not any(os.path.isfile(p) for p in glob.iglob(path, recursive=True)):
            raise _missing(f"batch input pattern {given!r} matches no file (looked for {path})")
    elif not os.path.exists(path):
        raise _missing(f"batch input {given!r} does not exist (looked for {path})")


def _check_output(path: str, given: str) -> None:
    target = Path(path)
    if target.exists():
        if not target.is_dir():
            raise _missing(f"batch output {given!r} is a file, not a folder ({path})")
        return
    # The job creates the folder and its missing parents: the nearest existing one must allow it.
    parent = next(p for p in target.parents if p.exists())
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise _missing(
            f"batch output {given!r} cannot be created: {parent} is not a writable folder"
        )


def _missing(message: str) -> InvalidInput:
    return InvalidInput(
        message,
        hint="paths are taken relative to the folder you run this in; check the spelling, "
        "or give an absolute path",
    )
