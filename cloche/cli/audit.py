"""``cloche audit``: who changed what, newest first."""

import json
from typing import Annotated, Any

import typer

from cloche.cli._common import JsonOpt, get_client
from cloche.cli._output import new_table, out, print_json, when


def audit(
    ctx: typer.Context,
    resource_type: Annotated[
        str | None,
        typer.Option(
            metavar="TYPE", help="Only this kind of resource: model, token.", show_default=False
        ),
    ] = None,
    resource: Annotated[
        str | None,
        typer.Option(
            metavar="RESOURCE",
            help="Only this resource, e.g. churn:2, churn@prod or a token id.",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=10_000, metavar="N", help="How many entries.")
    ] = 50,
    json_: JsonOpt = False,
) -> None:
    """Show the audit log: who changed what and when, newest first."""
    entries = get_client(ctx).audit.list(
        resource_type=resource_type, resource=resource, limit=limit
    )
    if json_:
        print_json(entries)
        return
    if not entries:
        out.print("No audit entries match.")
        return
    table = new_table(
        "Audit log",
        ("when", "actor", "action", "resource", "change"),
        whole=("action",),
        dates=("when",),
    )
    for e in entries:
        table.add_row(when(e.at), e.actor, e.action, e.resource, _change(e.before, e.after))
    out.print(table)


def _change(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    def compact(value: dict[str, Any] | None) -> str:
        return json.dumps(value, separators=(",", ":")) if value else "∅"

    if before is None and after is None:
        return ""
    return f"{compact(before)} → {compact(after)}"
