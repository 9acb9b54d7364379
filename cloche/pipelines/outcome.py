"""A step attempt's outcome as the executors that run it elsewhere (a forked process, a Ray
task) carry it back: ``("ok", value, artifact metadata)`` or ``("error", description, {})``,
made where the step ran and settled where the runner waits."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from cloche.errors import ClocheError, StepFailed, Timeout
from cloche.pipelines.artifacts import Artifact

MAX_LOG_CHARS = 64_000  # the end of a step's printed output that its record keeps
Outcome = tuple[str, Any, dict[str, Any]]


def describe(exc: BaseException) -> str:
    """A step's exception as its error: a cloche error's code and message, else the end of
    its traceback."""
    if isinstance(exc, ClocheError):
        return f"{exc.code}: {exc.message}" + (f" ({exc.hint})" if exc.hint else "")
    frames = traceback.format_exception(exc)
    return "".join(frames[-3:]).strip()[-4000:]


def outcome_of(
    func: Callable[..., Any], arguments: dict[str, Any], written: dict[str, Artifact]
) -> Outcome:
    """Call ``func``; what it returned and its output artifacts' metadata, or its error."""
    try:
        value = func(**arguments)
    except BaseException as exc:
        return ("error", describe(exc), {})
    return ("ok", value, {n: a.metadata for n, a in written.items()})


def past_timeout(name: str, timeout: float | None) -> Timeout:
    return Timeout(f"step {name!r} ran past its timeout of {timeout:g} s and was stopped")


def settle(outcome: Outcome, written: dict[str, Artifact], log: str) -> tuple[Any, str]:
    """The step's value and log, its artifacts' metadata copied back; StepFailed for an error."""
    kind, value, metadata = outcome
    if kind == "error":
        raise StepFailed(value, log=log)
    for name, meta in metadata.items():
        written[name].metadata = meta
    return value, log
