"""The pipeline step a service call is made for, carried from the step to the services.

A step runs with its run id and step name set in a context variable (``bound``); the SDK over
HTTP sends it as the ``X-Cloche-Pipeline-Step: RUN/STEP`` header, which the API sets again for
the request (``api/lineage_context.py``). The services record what the step made with
``links.record``. No database here: the HTTP SDK imports this module.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from cloche.errors import InvalidInput

HEADER = "X-Cloche-Pipeline-Step"
_STEP: ContextVar[StepRef | None] = ContextVar("cloche_pipeline_step", default=None)
_FORM = re.compile(r"(pr_[0-9a-f]{1,30})/([A-Za-z0-9_.-]{1,128}(?:\[\d{1,6}\])?)")
T = TypeVar("T")


@dataclass(frozen=True)
class StepRef:
    run_id: str
    step: str  # ``train``, or ``train[2]`` for a loop item

    def __str__(self) -> str:
        return f"{self.run_id}/{self.step}"


def parse(text: str) -> StepRef:
    """``RUN/STEP`` (``pr_3f2a/deploy_model``, ``pr_3f2a/score[2]``) as a StepRef."""
    match = _FORM.fullmatch(text.strip())
    if match is None:
        raise InvalidInput(
            f"{HEADER} {text[:80]!r} is not RUN/STEP",
            hint="e.g. pr_3f2a9c0b1d2e/deploy_model; pipeline steps send it by themselves",
        )
    return StepRef(match.group(1), match.group(2))


def current() -> StepRef | None:
    """The step this call is made for, or None outside pipeline steps."""
    return _STEP.get()


@contextmanager
def step_context(step: StepRef | None) -> Iterator[None]:
    token = _STEP.set(step)
    try:
        yield
    finally:
        _STEP.reset(token)


def bound(func: Callable[..., T], run_id: str, step: str) -> Callable[..., T]:
    """``func`` running as ``run_id``'s step ``step``, in whichever thread or process calls it
    (a context variable does not follow a new thread by itself)."""

    ref = StepRef(run_id, step)

    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> T:
        with step_context(ref):
            return func(*args, **kwargs)

    call.step_ref = ref  # type: ignore[attr-defined]
    return call


def unbound(func: Callable[..., T]) -> tuple[Callable[..., T], StepRef | None]:
    """What ``bound`` wrapped, and the step it was bound to (``func`` and None otherwise), for
    an executor that must name the function itself (the fork server knows only the run's
    functions) and bind it again where it runs."""
    ref = getattr(func, "step_ref", None)
    if isinstance(ref, StepRef):
        return func.__wrapped__, ref  # type: ignore[attr-defined]
    return func, None


def headers() -> dict[str, str]:
    """The header that carries the current step over HTTP; empty outside steps."""
    step = current()
    return {HEADER: str(step)} if step is not None else {}
