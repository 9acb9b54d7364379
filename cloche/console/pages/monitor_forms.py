"""Creating a monitor from a form and deleting one: the monitoring service that `cloche
monitors create` and `cloche monitors delete` reach, with the API's role and its messages.

The form writes what the CLI's options write: durations as ``30m``/``1h``, per-feature
thresholds and alert channels one to a line. Each value is read here (a bad one is shown beside
its control and nothing is written); the service then checks the endpoint, the name and the
channels as it does for every caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloche.auth.roles import Permission, Principal, authorize
from cloche.durations import parse_duration
from cloche.errors import (
    ClocheError,
    Conflict,
    DestinationRefused,
    InvalidInput,
    InvalidName,
    NotFound,
)
from cloche.monitoring import service
from cloche.monitoring.entities import MonitorConfig

from ..render import SESSION_KEY
from .forms import form_error, form_fields, go_to

METRICS = ("js", "psi", "ks", "wasserstein")
# The form's controls and what they hold when it opens: the CLI's defaults.
DEFAULTS = {
    "endpoint": "",
    "name": "",
    "every": "1h",
    "window": "1h",
    "metric": "js",
    "skew_threshold": "0.3",
    "drift_threshold": "0.3",
    "features": "",
    "alerts": "",
    "cooldown": "6h",
    "min_breaches": "1",
    "of_runs": "1",
    "min_rows": "50",
}
CONFIRM = "yes"
FORM_PAGE = "monitor_form_page.html"  # a refused form without JavaScript: the form on its own


def _principal(request: Request) -> Principal:
    principal: Principal = request.scope[SESSION_KEY].principal
    return principal


def _duration(label: str) -> Callable[[str], int]:
    def read(raw: str) -> int:
        duration = parse_duration(raw)
        if duration is None:
            raise InvalidInput(f"{label} {raw!r} is not a duration", hint="e.g. 30m, 1h, 6h, 1d")
        return int(duration.total_seconds())

    return read


def _number(label: str, kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def read(raw: str) -> Any:
        try:
            return kind(raw)
        except ValueError:
            example = "0.3" if kind is float else "3"
            raise InvalidInput(f"{label} {raw!r} is not a number", hint=f"e.g. {example}") from None

    return read


def _features(raw: str) -> dict[str, float]:
    """``NAME=THRESHOLD`` lines, as ``--feature`` takes them."""
    found: dict[str, float] = {}
    for line in filter(None, (x.strip() for x in raw.splitlines())):
        name, sep, value = line.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            found[name.strip()] = float(value)
        except ValueError:
            raise InvalidInput(
                f"feature threshold {line!r} is not NAME=NUMBER", hint="one a line, e.g. tenure=0.2"
            ) from None
    return found


def _lines(raw: str) -> list[str]:
    return [x.strip() for x in raw.splitlines() if x.strip()]


def _metric(raw: str) -> str:
    if raw not in METRICS:
        raise InvalidInput(f"no metric {raw!r}", hint=f"one of: {', '.join(METRICS)}")
    return raw


# Each control, the config field it sets and how its text is read.
READERS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "every": ("every_s", _duration("run every")),
    "window": ("window_s", _duration("window")),
    "metric": ("metric", _metric),
    "skew_threshold": ("skew_threshold", _number("skew threshold", float)),
    "drift_threshold": ("drift_threshold", _number("drift threshold", float)),
    "features": ("feature_thresholds", _features),
    "alerts": ("alerts", _lines),
    "cooldown": ("cooldown_s", _duration("cooldown")),
    "min_breaches": ("min_breaches", _number("breaches needed", int)),
    "of_runs": ("of_runs", _number("runs counted", int)),
    "min_rows": ("min_rows", _number("minimum rows", int)),
}
CONTROL_OF = {config: control for control, (config, _) in READERS.items()}


class _FormProblem(Exception):
    """A value of the form that cannot be read: the error, and the control it came from. Not a
    ClocheError of its own (errors.py holds those): it carries one to its control."""

    def __init__(self, control: str, error: ClocheError) -> None:
        super().__init__(error.message)
        self.control = control
        self.error = error


def read_config(fields: dict[str, str]) -> MonitorConfig:
    """The form's text as a MonitorConfig; _FormProblem names the control that is wrong."""
    if not fields["endpoint"]:
        raise _FormProblem(
            "endpoint", InvalidInput("no endpoint to watch", hint="name one, e.g. churn-live")
        )
    values: dict[str, Any] = {}
    for control, (key, read) in READERS.items():
        try:
            values[key] = read(fields[control])
        except ClocheError as error:
            raise _FormProblem(control, error) from None
    try:
        return MonitorConfig.model_validate(values)
    except ValidationError as exc:
        problem = exc.errors()[0]
        key = str(problem["loc"][0]) if problem["loc"] else "min_breaches"
        control = CONTROL_OF.get(key, "min_breaches")  # the model check: breaches vs runs
        message = str(problem["msg"]).removeprefix("Value error, ")
        raise _FormProblem(control, InvalidInput(f"{fields[control]!r}: {message}")) from None


def _control_of(error: ClocheError) -> str:
    """Which control a service error is about, so the message appears beside it."""
    if isinstance(error, NotFound):
        return "endpoint"
    if isinstance(error, Conflict | InvalidName):
        return "name"
    if isinstance(error, DestinationRefused) or "channel" in error.message:
        return "alerts"
    return "form"


async def create_monitor(request: Request) -> Response:
    """A monitor from the form: the monitoring service with the API's role and checks."""
    principal = _principal(request)
    fields = await form_fields(request, tuple(DEFAULTS))
    settings = request.app.state.settings
    try:
        authorize(principal, Permission.DEPLOY)
        try:
            config = read_config(fields)
        except _FormProblem as problem:
            return _form_problem(request, fields, problem.error, problem.control)
        made = await asyncio.to_thread(
            service.create_monitor,
            request.app.state.store,
            endpoint=fields["endpoint"],
            name=fields["name"] or None,
            config=config,
            actor=principal.actor,
            egress=settings.egress.policy(),
        )
    except ClocheError as error:
        return _form_problem(request, fields, error, _control_of(error))
    return go_to(request, f"/console/monitors/{made.name}")


def _form_problem(
    request: Request, fields: dict[str, str], error: ClocheError, control: str
) -> Response:
    """The form again, with ``error`` beside ``control``."""
    context = {"form": fields, "metrics": METRICS, "field": control}
    return form_error(
        request, "_monitor_create_form.html", "monitor-create", context, error, page=FORM_PAGE
    )


async def delete_monitor(request: Request) -> Response:
    """Delete a monitor with its runs and alerts, once the box saying so is ticked."""
    principal = _principal(request)
    name = request.path_params["name"]
    fields = await form_fields(request, ("confirm",))
    try:
        authorize(principal, Permission.DEPLOY)
        if fields["confirm"] != CONFIRM:
            raise InvalidInput(
                f"monitor {name} was not deleted: the box confirming it was not ticked",
                hint="tick the box, then delete",
            )
        await asyncio.to_thread(
            service.delete_monitor, request.app.state.store, name, actor=principal.actor
        )
    except ClocheError as error:
        context = {"monitor_name": name}
        return form_error(
            request, "_monitor_delete.html", "monitor-delete", context, error, page=FORM_PAGE
        )
    return go_to(request, "/console/monitors")


ROUTES = [
    Route("/monitors", create_monitor, methods=["POST"]),
    Route("/monitors/{name}/delete", delete_monitor, methods=["POST"]),
]
