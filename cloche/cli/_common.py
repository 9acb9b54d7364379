"""What every command shares: global state, option aliases, settings and the client."""

from dataclasses import dataclass
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from cloche.client import Client
from cloche.config import Settings
from cloche.errors import InvalidInput


@dataclass
class Globals:
    """The root options, kept on the context for every command."""

    url: str | None = None
    token: str | None = None


def _remember_json(ctx: typer.Context, value: bool) -> bool:
    # The error handler in app.py reads this to answer a failing `--json` call in JSON too.
    if value:
        ctx.meta["cloche.json"] = True
    return value


JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print machine-readable JSON on stdout instead of tables.",
        callback=_remember_json,
    ),
]
LabelsOpt = Annotated[
    list[str] | None,
    typer.Option("--label", "-l", metavar="KEY=VALUE", help="A label (repeatable)."),
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def load_settings(**overrides: Any) -> Settings:
    """Settings from CLOCHE_* variables plus ``overrides``; bad values become InvalidInput."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise InvalidInput(
            "invalid configuration: " + "; ".join(_describe(e) for e in exc.errors()),
            hint="fix the CLOCHE_* environment variable or option named above",
        ) from None


def _describe(error: Any) -> str:
    msg = str(error.get("msg", "")).removeprefix("Value error, ")
    loc = [str(part) for part in error.get("loc", ())]
    if not loc:
        return msg
    return f"CLOCHE_{'__'.join(loc).upper()}: {msg}"


def get_client(ctx: typer.Context) -> Client:
    """A Client for the server named by --url/CLOCHE_URL, else in-process on CLOCHE_HOME."""
    options = ctx.find_root().obj
    if not isinstance(options, Globals):
        options = Globals()
    if options.url:
        client = Client(options.url, token=options.token)
    else:
        client = Client(settings=load_settings())
    ctx.call_on_close(client.close)
    return client


def parse_pairs(values: list[str] | None, *, option: str, example: str) -> dict[str, str]:
    """``["k=v", ...]`` from a repeatable option into a dict; InvalidInput names the bad one."""
    out: dict[str, str] = {}
    for raw in values or []:
        key, sep, value = raw.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(
                f"invalid {option} {raw!r}",
                hint=f"write {option} KEY=VALUE, e.g. {option} {example}",
            )
        out[key.strip()] = value.strip()
    return out
