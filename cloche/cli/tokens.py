"""``cloche tokens``: create, list and revoke API tokens; print the local admin token."""

from typing import Annotated

import typer
from rich.text import Text

from cloche.auth.local_token import require_local_token
from cloche.cli._common import JsonOpt, get_client, load_settings
from cloche.cli._output import err, new_table, out, print_json, success, when

app = typer.Typer(help="Manage API tokens (admin).", no_args_is_help=True)
ROLE_HELP = (
    "admin (everything), publisher (also uploads pickle, joblib, torch and custom Python "
    "models, which run code when loaded), deployer (uploads ONNX, XGBoost and LightGBM models, "
    "deploys, runs jobs), edge (sends an edge server's log), predictor (predicts) or viewer "
    "(reads). See SECURITY.md."
)


@app.command()
def create(
    ctx: typer.Context,
    role: Annotated[
        str,
        typer.Option("--role", "-r", metavar="ROLE", help=ROLE_HELP),
    ],
    name: Annotated[
        str, typer.Option("--name", "-n", metavar="NAME", help="What the token is for.")
    ] = "",
    json_: JsonOpt = False,
) -> None:
    """Create an API token. It is printed once and never shown again."""
    new = get_client(ctx).tokens.create(role=role, name=name)
    if json_:
        print_json(new)
        return
    label = f" ({new.name})" if new.name else ""
    # Only the secret goes to stdout, so `cloche tokens create --role viewer > token.txt` works.
    err.print(Text("✓ ", style="green") + Text(f"created {new.role} token {new.id}{label}"))
    out.print(new.token, markup=False, highlight=False, soft_wrap=True)
    err.print(
        Text(
            "This token will not be shown again: store it safely "
            "(e.g. in CLOCHE_TOKEN or a secret manager).",
            style="yellow",
        )
    )


@app.command("list")
def list_(ctx: typer.Context, json_: JsonOpt = False) -> None:
    """List API tokens (never their secrets)."""
    found = get_client(ctx).tokens.list()
    if json_:
        print_json(found)
        return
    if not found:
        out.print("No tokens. Create one with `cloche tokens create --role ROLE`.")
        return
    table = new_table(
        "Tokens",
        ("id", "name", "role", "created", "by", "status"),
        whole=("id",),
        dates=("created",),
    )
    for t in found:
        status = (
            Text(f"revoked {when(t.revoked_at)}", style="dim")
            if t.revoked_at
            else Text("active", style="green")
        )
        table.add_row(t.id, t.name, t.role, when(t.created_at), t.created_by, status)
    out.print(table)


@app.command()
def revoke(
    ctx: typer.Context,
    token_id: Annotated[str, typer.Argument(metavar="ID", help="The token's id.")],
    json_: JsonOpt = False,
) -> None:
    """Revoke a token by id; it stops working at once."""
    info = get_client(ctx).tokens.revoke(token_id)
    if json_:
        print_json(info)
    else:
        success(f"revoked {info.role} token {info.id}")


@app.command()
def local() -> None:
    """Print the local admin token that `cloche up` keeps in CLOCHE_HOME/local-token."""
    # Only the secret goes to stdout: `curl -H "Authorization: Bearer $(cloche tokens local)"`.
    out.print(
        require_local_token(load_settings().home), markup=False, highlight=False, soft_wrap=True
    )
