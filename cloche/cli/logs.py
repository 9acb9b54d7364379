"""``cloche logs``: what an endpoint served, from its payload log."""

import json
from typing import Annotated

import typer
from rich.table import Table

from cloche.cli._common import JsonOpt, get_client
from cloche.cli._output import out


def logs(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(metavar="ENDPOINT", help="The endpoint's name.")],
    since: Annotated[
        str, typer.Option(metavar="WHEN", help="A duration (30m, 1h, 7d) or an ISO time.")
    ] = "1h",
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many, the newest.")] = 20,
    json_: JsonOpt = False,
) -> None:
    """Show an endpoint's logged requests: time, id, deployment, status, latency, I/O."""
    client = get_client(ctx)
    table = client.logs.read(endpoint, since=since, limit=limit)
    stats = client.logs.stats()
    if json_:
        from cloche.logs.service import rows

        payload = {"endpoint": endpoint, "rows": rows(table), "stats": stats.model_dump()}
        typer.echo(json.dumps(payload, default=str))
        return
    view = Table(title=f"Payload log of {endpoint} (since {since})", title_justify="left")
    for column in ("time", "request id", "deployment", "status", "ms", "inputs", "outputs / error"):
        view.add_column(column, overflow="fold")
    for row in table.to_pylist():
        deployment = f"{row['model']}:{row['version']}" + (" (shadow)" if row["shadow"] else "")
        result = row["outputs"] if row["status"] == 200 else row["error"]
        view.add_row(
            row["time"].strftime("%H:%M:%S.%f")[:-3],
            row["request_id"],
            deployment,
            str(row["status"]),
            f"{row['latency_ms']:.1f}",
            _short(row["inputs"]),
            _short(result),
        )
    out.print(view)
    source = f"by {stats.workers} worker(s)"
    if stats.synced:
        source = (
            f"({stats.synced} synced from edge sites, the rest served by {stats.workers} worker(s))"
        )
    out.print(
        f"{table.num_rows} shown; {stats.logged} logged in all {source}; "
        f"{stats.dropped} could not be logged"
    )


def _short(text: str | None, width: int = 60) -> str:
    if text is None:
        return ""
    return text if len(text) <= width else text[: width - 1] + "…"
